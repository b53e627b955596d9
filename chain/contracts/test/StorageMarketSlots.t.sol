// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Base} from "./utils/Base.sol";
import {StorageMarket} from "../src/StorageMarket.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {IStorageMarket} from "../src/interfaces/IStorageMarket.sol";

/// Taking, releasing, missing and repairing slots.
contract StorageMarketSlotsTest is Base {
    uint256 id;

    function setUp() public override {
        super.setUp();
        _registerAll();
        id = _createDeal();
    }

    // ---------------------------------------------------------------------------------------------
    // takeSlot

    function test_takeSlot_duringSetupProvesFromPeriodZero() public {
        address p = providers[0];
        vm.expectEmit(address(registry));
        emit IProviderRegistry.CommitmentsChanged(p, address(market), 1);
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotTaken(id, 1, p, 0);
        _take(p, id, 1);
        IStorageMarket.Slot memory s = market.slotInfo(id, 1);
        assertEq(s.provider, p);
        assertEq(s.firstPeriod, 0);
        assertEq(s.lastProvenPlusOne, 0);
        assertEq(s.proofs, 0);
        (bool held, uint256 slot) = market.slotOf(id, p);
        assertTrue(held);
        assertEq(slot, 1);
        assertEq(registry.commitmentsOf(p), 1);
        assertEq(registry.commitmentsBy(address(market), p), 1);
    }

    function test_takeSlot_duringPeriodProvesFromTheNext() public {
        _rollToPeriod(id, 2);
        vm.roll(block.number + PERIOD - 1); // last block of period 2
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotTaken(id, 0, providers[0], 3);
        _take(providers[0], id, 0);
    }

    function test_takeSlot_inTheLastPeriodIsTooLate() public {
        _rollToPeriod(id, 4);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.TooLateToTake.selector, id));
        market.takeSlot(id, 0);
        // The block before still works: period 3, proving period 4.
        vm.roll(block.number - 1);
        _take(providers[0], id, 0);
    }

    function test_takeSlot_rejections() public {
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 99));
        market.takeSlot(99, 0);

        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.InvalidSlot.selector, id, 3));
        market.takeSlot(id, 3);

        _take(providers[0], id, 0);
        vm.prank(providers[1]);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.SlotOccupied.selector, id, 0, providers[0]));
        market.takeSlot(id, 0);

        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.AlreadyHoldsSlot.selector, id, 0));
        market.takeSlot(id, 1);

        address stranger = makeAddr("stranger");
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.NotEligible.selector, stranger));
        market.takeSlot(id, 1);
    }

    function test_takeSlot_underMinimumStakeIsNotEligible() public {
        address p = providers[0];
        vm.prank(p);
        registry.requestUnbond(MIN_STAKE + 1);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.NotEligible.selector, p));
        market.takeSlot(id, 0);
    }

    function test_takeSlot_failsWhenTheMarketIsNotAuthorised() public {
        registry.setMarket(address(market), false);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotMarket.selector, address(market)));
        market.takeSlot(id, 0);
    }

    function test_takeSlot_oneSlotPerDealButManyDeals() public {
        uint256 id2 = _createDeal();
        _take(providers[0], id, 0);
        _take(providers[0], id2, 0);
        assertEq(registry.commitmentsOf(providers[0]), 2);
    }

    function test_committedProviderCannotUnbondBelowMinimum() public {
        address p = providers[0];
        _take(p, id, 0);
        vm.prank(p);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.CommittedStakeBelowMinimum.selector, MIN_STAKE - 1, MIN_STAKE)
        );
        registry.requestUnbond(MIN_STAKE + 1);
        vm.prank(p);
        registry.requestUnbond(MIN_STAKE);
    }

    // ---------------------------------------------------------------------------------------------
    // releaseSlot

    function test_releaseSlot_freesWithoutPenalty() public {
        address p = providers[0];
        _take(p, id, 0);
        _rollToPeriod(id, 0);
        _prove(p, id, 0);
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotFreed(id, 0, p, IStorageMarket.FreeReason.Released);
        vm.prank(p);
        market.releaseSlot(id, 0);
        assertEq(market.slotInfo(id, 0).provider, address(0));
        assertEq(market.slotInfo(id, 0).proofs, 1);
        assertEq(registry.stakeOf(p), MIN_STAKE * 2);
        assertEq(registry.commitmentsOf(p), 0);
        (bool held,) = market.slotOf(id, p);
        assertFalse(held);
        // Released slot can be taken again, by anyone eligible.
        _take(providers[1], id, 0);
    }

    function test_releaseSlot_rejections() public {
        _take(providers[0], id, 0);
        vm.prank(providers[1]);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.NotSlotHolder.selector, id, 0, providers[1]));
        market.releaseSlot(id, 0);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.InvalidSlot.selector, id, 300));
        market.releaseSlot(id, 300);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 42));
        market.releaseSlot(42, 0);
        // A holder in default cannot walk away.
        _rollToPeriod(id, 1);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.PeriodMissed.selector, id, 0, 0));
        market.releaseSlot(id, 0);
    }

    // ---------------------------------------------------------------------------------------------
    // markMissed

    function test_markMissed_slashesFreesAndAllowsRepair() public {
        address p = providers[0];
        address repairer = providers[1];
        _take(p, id, 0);
        _rollToPeriod(id, 0);
        _prove(p, id, 0);
        _rollToPeriod(id, 1); // p stays silent
        _rollToPeriod(id, 2);
        (bool missed, uint256 period) = market.missedPeriod(id, 0);
        assertTrue(missed);
        assertEq(period, 1);

        uint256 slash = MIN_STAKE * 2 * SLASH_BPS / 10_000;
        vm.expectEmit(address(registry));
        emit IProviderRegistry.Slashed(p, address(market), slash, address(market));
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotMissed(id, 0, p, 1, slash);
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotFreed(id, 0, p, IStorageMarket.FreeReason.Missed);
        vm.prank(makeAddr("watcher"));
        market.markMissed(id, 0);

        assertEq(registry.stakeOf(p), MIN_STAKE * 2 - slash);
        assertEq(registry.commitmentsOf(p), 0);
        assertEq(market.getDeal(id).slashed, slash);
        assertEq(market.escrowOf(id), 15 * PRICE - PRICE + slash);
        assertEq(market.slotInfo(id, 0).provider, address(0));

        vm.expectEmit(address(market));
        emit IStorageMarket.SlotTaken(id, 0, repairer, 3);
        _take(repairer, id, 0);
        // The repairer cannot prove the current period, only the next.
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        vm.prank(repairer);
        vm.expectRevert(
            abi.encodeWithSelector(IStorageMarket.ProofFailed.selector, id, 0, IStorageMarket.ProofStatus.NotYetProving)
        );
        market.submitProof(id, 0, seg, sib);
        _rollToPeriod(id, 3);
        _prove(repairer, id, 0);
        assertEq(market.slotInfo(id, 0).proofs, 2);
    }

    function test_markMissed_neverProvenHolder() public {
        _take(providers[0], id, 0);
        _rollToPeriod(id, 1);
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotMissed(id, 0, providers[0], 0, MIN_STAKE * 2 / 10);
        market.markMissed(id, 0);
    }

    function test_markMissed_lateReportStillWorks() public {
        _take(providers[0], id, 0);
        _rollToPeriod(id, 0);
        _prove(providers[0], id, 0);
        // Missed period 1, nobody reported during 2 and 3; the holder cannot catch up.
        _rollToPeriod(id, 3);
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        vm.prank(providers[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IStorageMarket.ProofFailed.selector, id, 0, IStorageMarket.ProofStatus.PeriodMissed)
        );
        market.submitProof(id, 0, seg, sib);
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotMissed(id, 0, providers[0], 1, MIN_STAKE * 2 / 10);
        market.markMissed(id, 0);
    }

    function test_markMissed_afterTheEndBeforeFinish() public {
        _take(providers[0], id, 0);
        for (uint256 p; p < 4; ++p) {
            _rollToPeriod(id, p);
            _prove(providers[0], id, 0);
        }
        vm.roll(market.getDeal(id).endBlock + 100);
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotMissed(id, 0, providers[0], 4, MIN_STAKE * 2 / 10);
        market.markMissed(id, 0);
        market.finishDeal(id);
    }

    function test_markMissed_notMissed() public {
        _take(providers[0], id, 0);
        // Setup window.
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.NotMissed.selector, id, 0));
        market.markMissed(id, 0);
        // First period still running.
        _rollToPeriod(id, 0);
        vm.roll(block.number + PERIOD - 1);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.NotMissed.selector, id, 0));
        market.markMissed(id, 0);
        _prove(providers[0], id, 0);
        // Period 0 proven; period 1 running.
        _rollToPeriod(id, 1);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.NotMissed.selector, id, 0));
        market.markMissed(id, 0);
        (bool missed,) = market.missedPeriod(id, 0);
        assertFalse(missed);
    }

    function test_markMissed_takenMidPeriodIsNotMissedForThatPeriod() public {
        _rollToPeriod(id, 1);
        _take(providers[0], id, 0); // proves from 2
        _rollToPeriod(id, 2);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.NotMissed.selector, id, 0));
        market.markMissed(id, 0);
        _rollToPeriod(id, 3);
        market.markMissed(id, 0);
    }

    function test_markMissed_rejections() public {
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.UnknownDeal.selector, 9));
        market.markMissed(9, 0);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.SlotEmpty.selector, id, 0));
        market.markMissed(id, 0);
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.InvalidSlot.selector, id, 256));
        market.markMissed(id, 256);
        (bool missed,) = market.missedPeriod(id, 0);
        assertFalse(missed);
    }

    function test_markMissed_slashReachesUnbondingStake() public {
        StorageMarket harsh = new StorageMarket(token, registry, PERIOD, 5_000);
        registry.setMarket(address(harsh), true);
        vm.prank(client);
        token.approve(address(harsh), type(uint256).max);
        IStorageMarket.DealParams memory params = _params(3, 1, 0, 64, 32, 3);
        vm.prank(client);
        uint256 d = harsh.createDeal(params);
        address p = providers[0];
        vm.prank(p);
        registry.addStake(MIN_STAKE);
        vm.prank(p);
        harsh.takeSlot(d, 0);
        vm.prank(p);
        registry.requestUnbond(MIN_STAKE * 2); // 1000 bonded, 2000 unbonding
        vm.roll(harsh.periodStart(d, 1));
        harsh.markMissed(d, 0); // half of 3000: all 1000 bonded, then 500 unbonding
        assertEq(registry.stakeOf(p), 0);
        (uint256 unbonding,) = registry.unbondingOf(p);
        assertEq(unbonding, MIN_STAKE * 3 / 2);
        assertEq(harsh.getDeal(d).slashed, MIN_STAKE * 3 / 2);
        assertEq(token.balanceOf(address(harsh)), harsh.escrowOf(d));
    }

    function test_markMissed_withZeroSlashOnlyFrees() public {
        StorageMarket lenient = new StorageMarket(token, registry, PERIOD, 0);
        registry.setMarket(address(lenient), true);
        vm.prank(client);
        token.approve(address(lenient), type(uint256).max);
        IStorageMarket.DealParams memory params = _params(3, 1, 0, 64, 32, 3);
        vm.prank(client);
        uint256 d = lenient.createDeal(params);
        vm.prank(providers[0]);
        lenient.takeSlot(d, 0);
        vm.roll(lenient.periodStart(d, 1));
        vm.expectEmit(address(lenient));
        emit IStorageMarket.SlotMissed(d, 0, providers[0], 0, 0);
        lenient.markMissed(d, 0);
        assertEq(registry.stakeOf(providers[0]), MIN_STAKE * 2);
    }

    function test_deauthorisedMarket_settlesWithoutSlashing() public {
        _take(providers[0], id, 0);
        _take(providers[1], id, 1);
        _take(providers[2], id, 2);
        registry.setMarket(address(market), false);
        // Takes need the authority...
        uint256 d2 = _createDeal();
        vm.prank(providers[3]);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotMarket.selector, address(market)));
        market.takeSlot(d2, 0);
        // ...settling does not: a miss frees the slot without a slash, a release works, and the
        // deal finishes with every commitment ended.
        _rollToPeriod(id, 1);
        vm.expectEmit(address(market));
        emit IStorageMarket.SlotMissed(id, 0, providers[0], 0, 0);
        market.markMissed(id, 0);
        assertEq(registry.stakeOf(providers[0]), MIN_STAKE * 2);
        vm.roll(market.getDeal(id).endBlock);
        market.finishDeal(id);
        for (uint256 i; i < 3; ++i) {
            assertEq(registry.commitmentsOf(providers[i]), 0);
        }
        assertEq(token.balanceOf(address(market)), market.escrowOf(d2));
    }
}
