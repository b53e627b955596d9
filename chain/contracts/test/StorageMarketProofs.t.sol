// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Base} from "./utils/Base.sol";
import {MerkleTree} from "./utils/MerkleTree.sol";
import {IStorageMarket} from "../src/interfaces/IStorageMarket.sol";

/// Single and batched proofs: every acceptance rule and every refusal.
contract StorageMarketProofsTest is Base {
    uint256 id;
    address holder;

    function setUp() public override {
        super.setUp();
        _registerAll();
        id = _createDeal();
        holder = providers[0];
        _take(holder, id, 0);
    }

    function _expectStatus(uint256 dealId, uint256 slot, IStorageMarket.ProofStatus status) internal {
        vm.expectRevert(abi.encodeWithSelector(IStorageMarket.ProofFailed.selector, dealId, slot, status));
    }

    function test_submitProof_acceptedCreditsAndRecords() public {
        _rollToPeriod(id, 0);
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        vm.expectEmit(address(market));
        emit IStorageMarket.ProofAccepted(id, 0, holder, 0);
        vm.prank(holder);
        market.submitProof(id, 0, seg, sib);
        IStorageMarket.Slot memory s = market.slotInfo(id, 0);
        assertEq(s.lastProvenPlusOne, 1);
        assertEq(s.proofs, 1);
        assertEq(s.firstPeriod, 0);
        assertEq(market.claimable(holder), PRICE);
        assertEq(market.escrowOf(id), 14 * PRICE);
    }

    function test_submitProof_everyPeriodAtFirstAndLastBlock() public {
        for (uint256 p; p < 5; ++p) {
            _rollToPeriod(id, p);
            if (p % 2 == 1) vm.roll(block.number + PERIOD - 1);
            _prove(holder, id, 0);
        }
        assertEq(market.slotInfo(id, 0).proofs, 5);
        assertEq(market.claimable(holder), 5 * PRICE);
    }

    function test_submitProof_challengeMovesEveryPeriod() public {
        // Over a deal with many segments the challenged index differs between periods.
        uint256 big = _createDeal(1, 0, 32 * 1024, 32, 6);
        _take(holder, big, 0);
        uint256 changes;
        uint256 last = type(uint256).max;
        for (uint256 p; p < 6; ++p) {
            _rollToPeriod(big, p);
            uint256 index = market.challengeIndex(big, 0, p);
            if (index != last) ++changes;
            last = index;
            _prove(holder, big, 0);
        }
        assertGe(changes, 5);
    }

    function test_submitProof_unknownDeal() public {
        _rollToPeriod(id, 0);
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        _expectStatus(77, 0, IStorageMarket.ProofStatus.UnknownDeal);
        vm.prank(holder);
        market.submitProof(77, 0, seg, sib);
    }

    function test_submitProof_duringSetupIsTooEarly() public {
        (bytes memory seg, bytes32[] memory sib) = (new bytes(32), new bytes32[](4));
        _expectStatus(id, 0, IStorageMarket.ProofStatus.NotYetProving);
        vm.prank(holder);
        market.submitProof(id, 0, seg, sib);
    }

    function test_submitProof_afterTheEnd() public {
        vm.roll(market.getDeal(id).endBlock);
        _expectStatus(id, 0, IStorageMarket.ProofStatus.DealOver);
        vm.prank(holder);
        market.submitProof(id, 0, new bytes(32), new bytes32[](4));
    }

    function test_submitProof_notTheHolder() public {
        _rollToPeriod(id, 0);
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        _expectStatus(id, 0, IStorageMarket.ProofStatus.NotSlotHolder);
        vm.prank(providers[1]);
        market.submitProof(id, 0, seg, sib);
        _expectStatus(id, 1, IStorageMarket.ProofStatus.NotSlotHolder);
        vm.prank(holder);
        market.submitProof(id, 1, seg, sib);
        _expectStatus(id, 256, IStorageMarket.ProofStatus.NotSlotHolder);
        vm.prank(holder);
        market.submitProof(id, 256, seg, sib);
    }

    function test_submitProof_beforeFirstPeriod() public {
        _rollToPeriod(id, 1);
        _take(providers[1], id, 1); // proves from 2
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 1);
        _expectStatus(id, 1, IStorageMarket.ProofStatus.NotYetProving);
        vm.prank(providers[1]);
        market.submitProof(id, 1, seg, sib);
    }

    function test_submitProof_twiceInAPeriod() public {
        _rollToPeriod(id, 0);
        _prove(holder, id, 0);
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        _expectStatus(id, 0, IStorageMarket.ProofStatus.AlreadyProven);
        vm.prank(holder);
        market.submitProof(id, 0, seg, sib);
    }

    function test_submitProof_afterAMissedPeriod() public {
        _rollToPeriod(id, 1); // period 0 missed
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        _expectStatus(id, 0, IStorageMarket.ProofStatus.PeriodMissed);
        vm.prank(holder);
        market.submitProof(id, 0, seg, sib);
    }

    function test_submitProof_noRandomness() public {
        _rollToPeriod(id, 0);
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        vm.setBlockhash(block.number - 1, bytes32(0));
        _expectStatus(id, 0, IStorageMarket.ProofStatus.NoRandomness);
        vm.prank(holder);
        market.submitProof(id, 0, seg, sib);
    }

    function test_submitProof_invalidProofs() public {
        _rollToPeriod(id, 0);
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        uint256 index = market.challengeIndex(id, 0, 0);

        bytes memory badSeg = bytes.concat(seg);
        badSeg[31] ^= 0x01;
        _rejects(badSeg, sib);

        bytes32[] memory badSib = _copy(sib);
        badSib[2] ^= bytes32(uint256(1));
        _rejects(seg, badSib);

        // The proof of a neighbouring index.
        bytes32[][] memory levels = MerkleTree.build(shards[id][0], 32);
        uint256 other = index ^ 1;
        _rejects(MerkleTree.segmentAt(shards[id][0], 32, other), MerkleTree.path(levels, other));

        // Another slot's proof for the same index.
        bytes32[][] memory levels1 = MerkleTree.build(shards[id][1], 32);
        _rejects(MerkleTree.segmentAt(shards[id][1], 32, index), MerkleTree.path(levels1, index));

        // Lengths.
        _rejects(bytes.concat(seg, hex"00"), sib);
        _rejects(new bytes(31), sib);
        bytes32[] memory shortPath = new bytes32[](3);
        for (uint256 i; i < 3; ++i) {
            shortPath[i] = sib[i];
        }
        _rejects(seg, shortPath);

        // And the genuine one still goes through.
        vm.prank(holder);
        market.submitProof(id, 0, seg, sib);
    }

    function _rejects(bytes memory seg, bytes32[] memory sib) internal {
        _expectStatus(id, 0, IStorageMarket.ProofStatus.InvalidProof);
        vm.prank(holder);
        market.submitProof(id, 0, seg, sib);
    }

    function testFuzz_submitProof_anyCorruptionRejected(uint256 which, uint256 pos, bytes32 mask) public {
        vm.assume(mask != bytes32(0));
        _rollToPeriod(id, 0);
        (bytes memory seg, bytes32[] memory sib) = _proof(id, 0);
        if (which % 2 == 0) {
            seg[pos % seg.length] ^= mask[0] == 0 ? bytes1(0x80) : mask[0];
        } else {
            sib[pos % sib.length] ^= mask;
        }
        _expectStatus(id, 0, IStorageMarket.ProofStatus.InvalidProof);
        vm.prank(holder);
        market.submitProof(id, 0, seg, sib);
    }

    // ---------------------------------------------------------------------------------------------
    // Batches

    function _batchOf(uint256[] memory deals, address prover)
        internal
        view
        returns (IStorageMarket.Proof[] memory proofs)
    {
        proofs = new IStorageMarket.Proof[](deals.length);
        for (uint256 i; i < deals.length; ++i) {
            (bool held, uint256 slot) = market.slotOf(deals[i], prover);
            assertTrue(held);
            (bytes memory seg, bytes32[] memory sib) = _proof(deals[i], slot);
            proofs[i] = IStorageMarket.Proof(deals[i], slot, seg, sib);
        }
    }

    function test_submitProofs_acrossDeals() public {
        uint256[] memory deals = new uint256[](4);
        deals[0] = id;
        for (uint256 i = 1; i < 4; ++i) {
            deals[i] = _createDeal();
            _take(holder, deals[i], i % 3);
        }
        // All deals were created in the same block, so their periods line up.
        _rollToPeriod(deals[3], 0);
        IStorageMarket.Proof[] memory proofs = _batchOf(deals, holder);
        for (uint256 i; i < 4; ++i) {
            vm.expectEmit(address(market));
            emit IStorageMarket.ProofAccepted(deals[i], proofs[i].slot, holder, 0);
        }
        vm.prank(holder);
        assertEq(market.submitProofs(proofs), 4);
        assertEq(market.claimable(holder), 4 * PRICE);
    }

    function test_submitProofs_refusedProofsDoNotSinkTheBatch() public {
        uint256 d2 = _createDeal();
        _take(holder, d2, 1);
        _rollToPeriod(id, 0);
        uint256[] memory deals = new uint256[](2);
        deals[0] = id;
        deals[1] = d2;
        IStorageMarket.Proof[] memory proofs = _batchOf(deals, holder);
        proofs[0].segment[0] ^= 0x01;
        IStorageMarket.Proof[] memory withDup = new IStorageMarket.Proof[](3);
        withDup[0] = proofs[0];
        withDup[1] = proofs[1];
        withDup[2] = proofs[1];
        vm.expectEmit(address(market));
        emit IStorageMarket.ProofRejected(id, 0, holder, IStorageMarket.ProofStatus.InvalidProof);
        vm.expectEmit(address(market));
        emit IStorageMarket.ProofAccepted(d2, 1, holder, 0);
        vm.expectEmit(address(market));
        emit IStorageMarket.ProofRejected(d2, 1, holder, IStorageMarket.ProofStatus.AlreadyProven);
        vm.prank(holder);
        assertEq(market.submitProofs(withDup), 1);
        assertEq(market.claimable(holder), PRICE);
    }

    function test_submitProofs_emptyBatchReverts() public {
        vm.expectRevert(IStorageMarket.EmptyBatch.selector);
        market.submitProofs(new IStorageMarket.Proof[](0));
    }

    function _copy(bytes32[] memory a) internal pure returns (bytes32[] memory b) {
        b = new bytes32[](a.length);
        for (uint256 i; i < a.length; ++i) {
            b[i] = a[i];
        }
    }
}
