// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Base} from "./utils/Base.sol";
import {MerkleTree} from "./utils/MerkleTree.sol";
import {BIG} from "../src/BIG.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {StorageMarket} from "../src/StorageMarket.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {IStorageMarket} from "../src/interfaces/IStorageMarket.sol";
import {IRewardLedger} from "../src/interfaces/IRewardLedger.sol";

/// Deal creation, finishing, the client's money and the views.
contract StorageMarketDealsTest is Base {
    // ---------------------------------------------------------------------------------------------
    // Constructor

    function test_constructor_rejectsBadConfig() public {
        vm.expectRevert(IStorageMarket.InvalidConfig.selector);
        new StorageMarket(token, registry, 1, SLASH_BPS);
        vm.expectRevert(IStorageMarket.InvalidConfig.selector);
        new StorageMarket(token, registry, 257, SLASH_BPS);
        vm.expectRevert(IStorageMarket.InvalidConfig.selector);
        new StorageMarket(token, registry, PERIOD, 10_001);
        BIG other = new BIG(address(this), 1);
        vm.expectRevert(IStorageMarket.InvalidConfig.selector);
        new StorageMarket(other, registry, PERIOD, SLASH_BPS);
        vm.expectRevert();
        new StorageMarket(token, IProviderRegistry(address(0)), PERIOD, SLASH_BPS);
    }

    function test_constructor_setsConfig() public view {
        assertEq(address(market.token()), address(token));
        assertEq(address(market.registry()), address(registry));
        assertEq(market.periodBlocks(), PERIOD);
        assertEq(market.slashBps(), SLASH_BPS);
        assertEq(market.dealCount(), 0);
    }

    // ---------------------------------------------------------------------------------------------
    // createDeal

    function test_createDeal_escrowsAndRecordsEverything() public {
        IStorageMarket.DealParams memory p = _params(7, 2, 1, 300, 32, 5);
        uint256 deposit = PRICE * 3 * 5;
        vm.expectEmit(address(market));
        emit IStorageMarket.DealCreated(
            1,
            client,
            p.objectId,
            p.shardRoots,
            300,
            32,
            2,
            1,
            5,
            uint128(PRICE),
            uint64(block.number + PERIOD),
            deposit
        );
        vm.prank(client);
        uint256 id = market.createDeal(p);
        assertEq(id, 1);
        assertEq(market.dealCount(), 1);
        assertEq(token.balanceOf(address(market)), deposit);
        assertEq(market.escrowOf(id), deposit);

        IStorageMarket.DealView memory v = market.getDeal(id);
        assertEq(v.client, client);
        assertEq(v.objectId, p.objectId);
        assertEq(v.shardSize, 300);
        assertEq(v.segmentSize, 32);
        assertEq(v.k, 2);
        assertEq(v.m, 1);
        assertEq(v.numPeriods, 5);
        assertEq(v.pricePerSlotPeriod, PRICE);
        assertEq(v.startBlock, block.number + PERIOD);
        assertEq(v.endBlock, block.number + PERIOD + 5 * PERIOD);
        assertEq(v.depth, 4);
        assertEq(v.leafCount, 10);
        assertEq(v.deposit, deposit);
        assertEq(v.slashed, 0);
        assertFalse(v.finished);

        bytes32[] memory roots = market.shardRoots(id);
        assertEq(roots.length, 3);
        for (uint256 i; i < 3; ++i) {
            assertEq(roots[i], p.shardRoots[i]);
        }
        (bool started, uint256 period) = market.currentPeriod(id);
        assertFalse(started);
        assertEq(period, 0);
    }

    function test_createDeal_withPermit() public {
        (address signer, uint256 key) = makeAddrAndKey("permitClient");
        token.transfer(signer, 100 ether);
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        uint256 deposit = PRICE * 2 * 2;
        (uint8 v, bytes32 r, bytes32 s) = _permit(key, signer, address(market), deposit, block.timestamp + 1);
        vm.prank(signer);
        uint256 id = market.createDealWithPermit(p, block.timestamp + 1, v, r, s);
        assertEq(market.getDeal(id).client, signer);
        assertEq(token.balanceOf(signer), 100 ether - deposit);
        assertEq(token.allowance(signer, address(market)), 0);
    }

    function test_createDeal_withUsedPermitFallsBackToAllowance() public {
        (address signer, uint256 key) = makeAddrAndKey("permitClient");
        token.transfer(signer, 100 ether);
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        uint256 deposit = PRICE * 4;
        (uint8 v, bytes32 r, bytes32 s) = _permit(key, signer, address(market), deposit, block.timestamp + 1);
        // Someone front-runs the permit: the allowance exists, the permit call itself now fails.
        token.permit(signer, address(market), deposit, block.timestamp + 1, v, r, s);
        vm.prank(signer);
        market.createDealWithPermit(p, block.timestamp + 1, v, r, s);
        assertEq(token.balanceOf(address(market)), deposit);
    }

    function test_createDeal_badPermitWithoutAllowanceReverts() public {
        (address signer,) = makeAddrAndKey("permitClient");
        token.transfer(signer, 100 ether);
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        vm.prank(signer);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, PRICE * 4)
        );
        market.createDealWithPermit(p, block.timestamp + 1, 27, bytes32(uint256(1)), bytes32(uint256(2)));
    }

    function test_createDeal_withoutFundsReverts() public {
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        address poor = makeAddr("poor");
        vm.startPrank(poor);
        token.approve(address(market), type(uint256).max);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, poor, 0, PRICE * 4));
        market.createDeal(p);
        vm.stopPrank();
    }

    function test_createDeal_rejectsBadErasureParams() public {
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        p.k = 0;
        p.m = 2;
        _expectCreateRevert(p, abi.encodeWithSelector(IStorageMarket.InvalidErasureParams.selector, 0, 2, 2));
        p.k = 2;
        p.m = 1;
        _expectCreateRevert(p, abi.encodeWithSelector(IStorageMarket.InvalidErasureParams.selector, 2, 1, 2));
        p.k = 200;
        p.m = 57;
        p.shardRoots = new bytes32[](257);
        _expectCreateRevert(p, abi.encodeWithSelector(IStorageMarket.InvalidErasureParams.selector, 200, 57, 257));
    }

    function test_createDeal_acceptsTheLargestStripe() public {
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        p.k = 200;
        p.m = 56;
        p.shardRoots = new bytes32[](256);
        vm.prank(client);
        uint256 id = market.createDeal(p);
        assertEq(market.shardRoots(id).length, 256);
        assertEq(market.escrowOf(id), PRICE * 256 * 2);
    }

    function test_createDeal_rejectsBadSegmentSize() public {
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        uint32[5] memory bad = [uint32(0), 16, 48, 2048, 1000];
        for (uint256 i; i < bad.length; ++i) {
            p.segmentSize = bad[i];
            _expectCreateRevert(p, abi.encodeWithSelector(IStorageMarket.InvalidSegmentSize.selector, bad[i]));
        }
    }

    function test_createDeal_rejectsBadShardSize() public {
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        p.shardSize = 0;
        _expectCreateRevert(p, abi.encodeWithSelector(IStorageMarket.InvalidShardSize.selector, 0));
        // 2^48 segments is the deepest tree; one more byte needs depth 49.
        p.shardSize = uint64((uint256(1) << 48) * 32 + 1);
        _expectCreateRevert(p, abi.encodeWithSelector(IStorageMarket.InvalidShardSize.selector, p.shardSize));
        p.shardSize = uint64((uint256(1) << 48) * 32);
        vm.prank(client);
        uint256 id = market.createDeal(p);
        assertEq(market.getDeal(id).depth, 48);
    }

    function test_createDeal_rejectsBadPeriodsAndPrice() public {
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        p.numPeriods = 1;
        _expectCreateRevert(p, abi.encodeWithSelector(IStorageMarket.InvalidPeriods.selector, 1));
        p.numPeriods = 2;
        p.pricePerSlotPeriod = uint128(type(uint112).max) + 1;
        _expectCreateRevert(p, abi.encodeWithSelector(IStorageMarket.PriceTooHigh.selector, p.pricePerSlotPeriod));
        // Deposit above uint128.
        p.pricePerSlotPeriod = type(uint112).max;
        p.numPeriods = type(uint32).max;
        _expectCreateRevert(p, abi.encodeWithSelector(IStorageMarket.PriceTooHigh.selector, p.pricePerSlotPeriod));
    }

    function testFuzz_createDeal_depthAndLeafCountFollowTheRustRules(uint64 shardSize, uint8 segLog) public {
        uint32 seg = uint32(32) << (segLog % 6);
        shardSize = uint64(bound(shardSize, 1, (uint256(1) << 40)));
        IStorageMarket.DealParams memory p = _params(1, 1, 1, 64, 32, 2);
        p.shardSize = shardSize;
        p.segmentSize = seg;
        vm.prank(client);
        uint256 id = market.createDeal(p);
        IStorageMarket.DealView memory v = market.getDeal(id);
        uint256 n = (uint256(shardSize) + seg - 1) / seg;
        assertEq(v.leafCount, n);
        // tree_depth: smallest d with 2^d >= n, 0 for n <= 1.
        uint256 d = n <= 1 ? 0 : 256 - _clz(n - 1);
        assertEq(v.depth, d);
    }

    function _clz(uint256 x) internal pure returns (uint256 n) {
        n = 256;
        while (x != 0) {
            x >>= 1;
            --n;
        }
    }

    function _expectCreateRevert(IStorageMarket.DealParams memory p, bytes memory err) internal {
        vm.prank(client);
        vm.expectRevert(err);
        market.createDeal(p);
    }

    function _permit(uint256 key, address owner, address spender, uint256 value, uint256 deadline)
        internal
        view
        returns (uint8, bytes32, bytes32)
    {
        bytes32 typehash =
            keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
        bytes32 structHash = keccak256(abi.encode(typehash, owner, spender, value, token.nonces(owner), deadline));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
        return vm.sign(key, digest);
    }

    // ---------------------------------------------------------------------------------------------
    // finishDeal

    function test_finishDeal_beforeEndReverts() public {
        uint256 id = _createDeal();
        uint256 end = market.getDeal(id).endBlock;
        vm.roll(end - 1);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.DealNotOver.selector, id, end));
        market.finishDeal(id);
    }

    function test_finishDeal_unknownReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 5));
        market.finishDeal(5);
    }

    function test_finishDeal_untouchedDealRefundsEverything() public {
        uint256 before = token.balanceOf(client);
        uint256 id = _createDeal();
        vm.roll(market.getDeal(id).endBlock);
        vm.expectEmit(address(market));
        emit IStorageMarket.DealFinished(id, client, PRICE * 15, 0, 0);
        address anyone = makeAddr("anyone");
        vm.prank(anyone);
        assertEq(market.finishDeal(id), PRICE * 15);
        assertEq(token.balanceOf(client), before);
        assertEq(token.balanceOf(address(market)), 0);
        assertTrue(market.getDeal(id).finished);
        assertEq(market.escrowOf(id), 0);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.DealAlreadyFinished.selector, id));
        market.finishDeal(id);
    }

    /// Three holders over five periods: one proves all, one misses period 2 and is repaired by a
    /// fourth provider, one misses the last period. Every balance matches to the wei.
    function test_fullLifecycleAccounting() public {
        _registerAll();
        address a = providers[0];
        address b = providers[1];
        address c = providers[2];
        address repairer = providers[3];
        uint256 clientBefore = token.balanceOf(client);
        uint256 id = _createDeal();
        _take(a, id, 0);
        _take(b, id, 1);
        _take(c, id, 2);

        // Periods 0 and 1: everyone proves.
        for (uint256 p; p < 2; ++p) {
            _rollToPeriod(id, p);
            _prove(a, id, 0);
            _prove(b, id, 1);
            _prove(c, id, 2);
        }
        // Period 2: b is silent.
        _rollToPeriod(id, 2);
        _prove(a, id, 0);
        _prove(c, id, 2);
        // Period 3: b is marked missed and slashed, the repairer takes slot 1 (proves from 4).
        _rollToPeriod(id, 3);
        uint256 bSlash = MIN_STAKE * 2 * SLASH_BPS / 10_000;
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotMissed(id, 1, b, 2, bSlash);
        market.markMissed(id, 1);
        _take(repairer, id, 1);
        _prove(a, id, 0);
        _prove(c, id, 2);
        // Period 4 (last): c is silent.
        _rollToPeriod(id, 4);
        _prove(a, id, 0);
        _prove(repairer, id, 1);

        vm.roll(market.getDeal(id).endBlock);
        uint256 cSlash = MIN_STAKE * 2 * SLASH_BPS / 10_000;
        uint256 proofs = 5 + 2 + 1 + 4; // a, b, repairer, c
        uint256 paid = proofs * PRICE;
        uint256 refund = 15 * PRICE - paid + bSlash + cSlash;
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotMissed(id, 2, c, 4, cSlash);
        vm.expectEmit(address(market));
        emit IStorageMarket.DealFinished(id, client, refund, paid, bSlash + cSlash);
        assertEq(market.finishDeal(id), refund);

        assertEq(token.balanceOf(client), clientBefore - 15 * PRICE + refund);
        assertEq(market.claimable(a), 5 * PRICE);
        assertEq(market.claimable(b), 2 * PRICE);
        assertEq(market.claimable(c), 4 * PRICE);
        assertEq(market.claimable(repairer), 1 * PRICE);
        assertEq(token.balanceOf(address(market)), paid);
        assertEq(registry.stakeOf(b), MIN_STAKE * 2 - bSlash);
        assertEq(registry.stakeOf(c), MIN_STAKE * 2 - cSlash);
        for (uint256 i; i < 4; ++i) {
            assertEq(registry.commitmentsOf(providers[i]), 0);
        }
        address[4] memory who = [a, b, c, repairer];
        for (uint256 i; i < 4; ++i) {
            uint256 owed = market.claimable(who[i]);
            uint256 bal = token.balanceOf(who[i]);
            vm.prank(who[i]);
            assertEq(market.claimRewards(), owed);
            assertEq(token.balanceOf(who[i]), bal + owed);
        }
        assertEq(token.balanceOf(address(market)), 0);
        assertEq(token.balanceOf(address(registry)), registry.totalStake());
    }

    function test_finishDeal_freesSlotsAndEndsCommitments() public {
        _registerAll();
        uint256 id = _createDeal();
        _take(providers[0], id, 0);
        _take(providers[1], id, 1);
        for (uint256 p; p < 5; ++p) {
            _rollToPeriod(id, p);
            _prove(providers[0], id, 0);
            _prove(providers[1], id, 1);
        }
        vm.roll(market.getDeal(id).endBlock);
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotFreed(id, 0, providers[0], IStorageMarket.FreeReason.DealEnded);
        market.finishDeal(id);
        IStorageMarket.Slot memory s = market.slotInfo(id, 0);
        assertEq(s.provider, address(0));
        assertEq(s.proofs, 5);
        (bool held,) = market.slotOf(id, providers[0]);
        assertFalse(held);
        assertEq(registry.commitmentsOf(providers[0]), 0);
        // Nothing more can happen to a finished deal.
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.DealAlreadyFinished.selector, id));
        market.markMissed(id, 0);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.DealAlreadyFinished.selector, id));
        vm.prank(providers[2]);
        market.takeSlot(id, 2);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.DealAlreadyFinished.selector, id));
        vm.prank(providers[0]);
        market.releaseSlot(id, 0);
        (bool missed,) = market.missedPeriod(id, 0);
        assertFalse(missed);
    }

    // ---------------------------------------------------------------------------------------------
    // Rewards

    function test_claimRewards_paysAndResets() public {
        _registerAll();
        uint256 id = _createDeal();
        _take(providers[0], id, 0);
        _rollToPeriod(id, 0);
        _prove(providers[0], id, 0);
        assertEq(market.claimable(providers[0]), PRICE);
        assertEq(market.earned(providers[0]), PRICE);
        uint256 bal = token.balanceOf(providers[0]);
        vm.expectEmit(address(market));
        emit IRewardLedger.RewardsClaimed(providers[0], PRICE);
        vm.prank(providers[0]);
        market.claimRewards();
        assertEq(token.balanceOf(providers[0]), bal + PRICE);
        assertEq(market.claimable(providers[0]), 0);
        assertEq(market.earned(providers[0]), PRICE);
        vm.prank(providers[0]);
        vm.expectRevert(IRewardLedger.NothingToClaim.selector);
        market.claimRewards();
        // Earning again after a claim.
        _rollToPeriod(id, 1);
        _prove(providers[0], id, 0);
        assertEq(market.claimable(providers[0]), PRICE);
        assertEq(market.earned(providers[0]), 2 * PRICE);
    }

    function test_claimRewards_nothingEarnedReverts() public {
        vm.prank(makeAddr("nobody"));
        vm.expectRevert(IRewardLedger.NothingToClaim.selector);
        market.claimRewards();
    }

    // ---------------------------------------------------------------------------------------------
    // Views

    function test_views_unknownDealReverts() public {
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 1));
        market.getDeal(1);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 1));
        market.shardRoots(1);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 1));
        market.slotInfo(1, 0);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 1));
        market.currentPeriod(1);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 1));
        market.escrowOf(1);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 1));
        market.challengeIndex(1, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 1));
        market.periodStart(1, 0);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 1));
        market.missedPeriod(1, 0);
        (bool held, uint256 slot) = market.slotOf(1, client);
        assertFalse(held);
        assertEq(slot, 0);
    }

    function test_views_slotIndexOutOfRangeReverts() public {
        uint256 id = _createDeal();
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.InvalidSlot.selector, id, 256));
        market.slotInfo(id, 256);
    }

    function test_views_periodsAndClock() public {
        uint256 id = _createDeal();
        uint256 start = market.getDeal(id).startBlock;
        assertEq(start, block.number + PERIOD);
        assertEq(market.periodStart(id, 3), start + 3 * PERIOD);
        vm.roll(start + 3 * PERIOD - 1);
        (bool started, uint256 period) = market.currentPeriod(id);
        assertTrue(started);
        assertEq(period, 2);
        vm.roll(start + 3 * PERIOD);
        (, period) = market.currentPeriod(id);
        assertEq(period, 3);
        vm.roll(start + 9 * PERIOD);
        (, period) = market.currentPeriod(id);
        assertEq(period, 9);
    }

    /// The formula the Rust agent uses off chain.
    function testFuzz_challengeIndexFormula(uint256 period, bytes32 hash) public {
        uint256 id = _createDeal();
        period = bound(period, 0, 4);
        uint256 seedBlock = market.periodStart(id, period) - 1;
        vm.roll(seedBlock + 1);
        vm.assume(hash != bytes32(0));
        vm.setBlockhash(seedBlock, hash);
        for (uint256 slot; slot < 3; ++slot) {
            uint256 expected = uint256(keccak256(abi.encode(hash, id, slot))) % 10;
            assertEq(market.challengeIndex(id, slot, period), expected);
        }
    }

    function test_challengeIndex_futurePeriodHasNoRandomness() public {
        uint256 id = _createDeal();
        uint256 seedBlock = market.periodStart(id, 2) - 1;
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.NoRandomness.selector, seedBlock));
        market.challengeIndex(id, 0, 2);
    }

    function test_escrowOf_tracksPayments() public {
        _registerAll();
        uint256 id = _createDeal();
        _take(providers[0], id, 0);
        _rollToPeriod(id, 0);
        _prove(providers[0], id, 0);
        assertEq(market.escrowOf(id), 14 * PRICE);
        assertEq(
            IERC20(address(token)).balanceOf(address(market)), market.escrowOf(id) + market.claimable(providers[0])
        );
    }

    function test_rootsAreTheShardsRoots() public {
        uint256 id = _createDeal();
        bytes32[] memory roots = market.shardRoots(id);
        for (uint256 i; i < roots.length; ++i) {
            assertEq(roots[i], MerkleTree.root(shards[id][i], 32));
        }
    }

    function test_constructor_acceptsTheLimits() public {
        ProviderRegistry r2 = new ProviderRegistry(token, 1, 1, address(this));
        StorageMarket m2 = new StorageMarket(token, r2, 256, 0);
        assertEq(m2.periodBlocks(), 256);
    }
}
