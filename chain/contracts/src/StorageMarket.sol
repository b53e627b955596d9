// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {IStorageMarket} from "./interfaces/IStorageMarket.sol";
import {RewardLedger} from "./RewardLedger.sol";
import {SegmentMerkle} from "./lib/SegmentMerkle.sol";

/// @title StorageMarket
/// @notice Storage deals with on-chain proofs of storage, paid in BIG.
///
/// Timeline of a deal created in block `B` (`L = periodBlocks`):
/// - blocks `[B, B + L)` are the setup window: providers fetch their shards and take slots;
/// - period `p` (`0 <= p < numPeriods`) is blocks `[start + p*L, start + (p+1)*L)`, `start = B + L`;
/// - a slot taken during setup is proven from period 0, one taken during period `c` from `c + 1`.
///
/// Challenge: the seed of period `p` is `blockhash(start + p*L - 1)`, the hash of the block just
/// before the period, so it is unknown until the period is about to begin and can be read on
/// chain through the whole period (`L <= 256`). The challenged segment of a slot is
/// `uint256(keccak256(abi.encode(seed, dealId, slot))) % leafCount`.
///
/// Proofs: the holder sends the segment and its Merkle path during the period; an accepted proof
/// credits `pricePerSlotPeriod` to the holder's rewards. A holder that lets a period pass without a
/// proof is in default: it cannot prove again, and anyone may `markMissed`, which slashes
/// `slashBps` of its stake (bonded plus unbonding) into the deal's refund and frees the slot.
/// When the deal is over anyone may `finishDeal`: it settles the last period the same way, ends
/// every commitment and returns the unspent escrow plus the slashed stake to the client.
contract StorageMarket is IStorageMarket, RewardLedger {
    using SafeERC20 for IERC20;

    /// Most shards per deal (`k + m <= 256`, the GF(2^8) Reed-Solomon limit).
    uint256 public constant MAX_SLOTS = 256;
    uint256 public constant MIN_SEGMENT_SIZE = 32;
    uint256 public constant MAX_SEGMENT_SIZE = 1024;
    /// BLOCKHASH reaches 256 blocks back, so a period is at most that long.
    uint256 public constant MAX_PERIOD_BLOCKS = 256;
    uint256 public constant BPS = 10_000;

    /// The fields every proof reads, packed into one storage word.
    struct DealCore {
        uint40 startBlock;
        uint32 numPeriods;
        uint8 depth;
        uint16 segmentSize;
        uint48 leafCount;
        uint112 price;
    }

    struct DealInfo {
        address client;
        uint64 shardSize;
        uint16 k;
        uint16 m;
    }

    struct DealBook {
        uint128 deposit;
        uint120 slashed;
        bool finished;
    }

    struct Deal {
        DealCore core;
        DealInfo info;
        DealBook book;
        bytes32 objectId;
    }

    /// Where providers are registered and staked.
    IProviderRegistry public immutable registry;
    /// Length of a proving period (and of a deal's setup window) in blocks.
    uint256 public immutable periodBlocks;
    /// Share of a provider's slashable stake taken for one missed period, in basis points.
    uint256 public immutable slashBps;
    /// Number of deals created; deal ids are `1..dealCount`.
    uint256 public dealCount;

    mapping(uint256 dealId => Deal) private _deals;
    mapping(uint256 dealId => bytes32[MAX_SLOTS]) private _roots;
    mapping(uint256 dealId => Slot[MAX_SLOTS]) private _slots;
    mapping(uint256 dealId => mapping(address provider => uint256)) private _slotPlusOne;

    constructor(IERC20 token_, IProviderRegistry registry_, uint256 periodBlocks_, uint256 slashBps_)
        RewardLedger(token_)
    {
        if (
            address(registry_) == address(0) || registry_.token() != token_ || periodBlocks_ < 2
                || periodBlocks_ > MAX_PERIOD_BLOCKS || slashBps_ > BPS
        ) revert InvalidConfig();
        registry = registry_;
        periodBlocks = periodBlocks_;
        slashBps = slashBps_;
    }

    // ---------------------------------------------------------------------------------------------
    // Clients

    /// Creates a deal and escrows `pricePerSlotPeriod * (k + m) * numPeriods` BIG from the caller
    /// (approved beforehand).
    function createDeal(DealParams calldata params) external returns (uint256 dealId) {
        uint256 deposit;
        (dealId, deposit) = _createDeal(params);
        token.safeTransferFrom(msg.sender, address(this), deposit);
    }

    /// `createDeal` with an EIP-2612 permit for the deposit instead of a prior approval. A permit
    /// that fails (e.g. front-run) is ignored; the transfer then needs an allowance.
    function createDealWithPermit(DealParams calldata params, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        returns (uint256 dealId)
    {
        uint256 deposit;
        (dealId, deposit) = _createDeal(params);
        try IERC20Permit(address(token)).permit(msg.sender, address(this), deposit, deadline, v, r, s) {} catch {}
        token.safeTransferFrom(msg.sender, address(this), deposit);
    }

    /// Ends a deal whose last period is over (anyone may call): a holder that did not prove the
    /// last period is slashed as by `markMissed`, every slot is freed, and the refund (deposit +
    /// slashed stake - rewards paid) goes to the client.
    function finishDeal(uint256 dealId) external returns (uint256 refund) {
        Deal storage deal = _deal(dealId);
        DealCore memory d = deal.core;
        DealBook memory b = deal.book;
        if (b.finished) revert DealAlreadyFinished(dealId);
        uint256 end = _endBlock(d);
        if (block.number < end) revert DealNotOver(dealId, end);
        deal.book.finished = true;

        uint256 n = uint256(deal.info.k) + deal.info.m;
        uint256 proofs;
        uint256 slashed = b.slashed;
        for (uint256 i; i < n; ++i) {
            (uint256 p, uint256 x) = _settleSlot(dealId, i, d);
            proofs += p;
            slashed += x;
        }
        deal.book.slashed = SafeCast.toUint120(slashed);
        uint256 paid = proofs * d.price;
        refund = b.deposit + slashed - paid;
        address client = deal.info.client;
        emit DealFinished(dealId, client, refund, paid, slashed);
        if (refund != 0) token.safeTransfer(client, refund);
    }

    // ---------------------------------------------------------------------------------------------
    // Providers

    /// Takes a free slot. The caller must be able to serve (registered, at least the minimum
    /// bonded) and must not hold another slot of the deal; it proves from the next period (from
    /// period 0 when taken during the setup window).
    function takeSlot(uint256 dealId, uint256 slot) external {
        Deal storage deal = _deal(dealId);
        DealCore memory d = deal.core;
        if (deal.book.finished) revert DealAlreadyFinished(dealId);
        uint256 first = block.number < d.startBlock ? 0 : _periodOf(d) + 1;
        if (first >= d.numPeriods) revert TooLateToTake(dealId);
        if (slot >= uint256(deal.info.k) + deal.info.m) revert InvalidSlot(dealId, slot);
        Slot memory s = _slots[dealId][slot];
        if (s.provider != address(0)) revert SlotOccupied(dealId, slot, s.provider);
        uint256 held = _slotPlusOne[dealId][msg.sender];
        if (held != 0) revert AlreadyHoldsSlot(dealId, held - 1);
        if (!registry.canServe(msg.sender)) revert NotEligible(msg.sender);

        // forge-lint: disable-next-line(unsafe-typecast) first < numPeriods, a uint32
        _slots[dealId][slot] = Slot(msg.sender, uint32(first), 0, s.proofs);
        _slotPlusOne[dealId][msg.sender] = slot + 1;
        registry.addCommitment(msg.sender);
        emit SlotTaken(dealId, slot, msg.sender, first);
    }

    /// Hands a slot back without penalty (the current period, if unproven, is simply not paid).
    /// Not allowed to a holder in default: that one is slashed through `markMissed`.
    function releaseSlot(uint256 dealId, uint256 slot) external {
        Deal storage deal = _deal(dealId);
        if (deal.book.finished) revert DealAlreadyFinished(dealId);
        Slot memory s = _slotAt(dealId, slot);
        if (s.provider != msg.sender) revert NotSlotHolder(dealId, slot, msg.sender);
        (bool missed, uint256 period) = _missed(deal.core, s);
        if (missed) revert PeriodMissed(dealId, slot, period);
        _free(dealId, slot, s, FreeReason.Released);
    }

    /// Proves the current period of one slot; reverts with `ProofFailed(dealId, slot, status)`.
    function submitProof(uint256 dealId, uint256 slot, bytes calldata segment, bytes32[] calldata siblings) external {
        ProofStatus status = _prove(dealId, slot, segment, siblings);
        if (status != ProofStatus.Accepted) revert ProofFailed(dealId, slot, status);
    }

    /// Proves many slots (of any deals) in one transaction. A refused proof does not revert the
    /// batch: it emits `ProofRejected` with the reason and the others go on.
    function submitProofs(Proof[] calldata proofs) external returns (uint256 accepted) {
        uint256 n = proofs.length;
        if (n == 0) revert EmptyBatch();
        for (uint256 i; i < n; ++i) {
            Proof calldata p = proofs[i];
            ProofStatus status = _prove(p.dealId, p.slot, p.segment, p.siblings);
            if (status == ProofStatus.Accepted) {
                ++accepted;
            } else {
                emit ProofRejected(p.dealId, p.slot, msg.sender, status);
            }
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Anyone

    /// Settles a holder in default (a completed period of its slot has no proof): slashes it into
    /// the deal's refund and frees the slot.
    function markMissed(uint256 dealId, uint256 slot) external {
        Deal storage deal = _deal(dealId);
        if (deal.book.finished) revert DealAlreadyFinished(dealId);
        Slot memory s = _slotAt(dealId, slot);
        if (s.provider == address(0)) revert SlotEmpty(dealId, slot);
        (bool missed, uint256 period) = _missed(deal.core, s);
        if (!missed) revert NotMissed(dealId, slot);
        uint256 slashed = _slash(s.provider);
        deal.book.slashed = SafeCast.toUint120(deal.book.slashed + slashed);
        emit SlotMissed(dealId, slot, s.provider, period, slashed);
        _free(dealId, slot, s, FreeReason.Missed);
    }

    // ---------------------------------------------------------------------------------------------
    // Views

    /// Everything about a deal.
    function getDeal(uint256 dealId) external view returns (DealView memory v) {
        Deal storage deal = _deal(dealId);
        DealCore memory d = deal.core;
        DealInfo memory info = deal.info;
        DealBook memory b = deal.book;
        v = DealView({
            client: info.client,
            objectId: deal.objectId,
            shardSize: info.shardSize,
            segmentSize: d.segmentSize,
            k: info.k,
            m: info.m,
            numPeriods: d.numPeriods,
            pricePerSlotPeriod: d.price,
            startBlock: d.startBlock,
            endBlock: uint64(_endBlock(d)),
            depth: d.depth,
            leafCount: d.leafCount,
            deposit: b.deposit,
            slashed: b.slashed,
            finished: b.finished
        });
    }

    /// The `k + m` shard roots of a deal.
    function shardRoots(uint256 dealId) external view returns (bytes32[] memory roots) {
        Deal storage deal = _deal(dealId);
        uint256 n = uint256(deal.info.k) + deal.info.m;
        roots = new bytes32[](n);
        for (uint256 i; i < n; ++i) {
            roots[i] = _roots[dealId][i];
        }
    }

    /// State of one slot.
    function slotInfo(uint256 dealId, uint256 slot) external view returns (Slot memory) {
        _deal(dealId);
        return _slotAt(dealId, slot);
    }

    /// The slot `provider` holds in a deal, if any.
    function slotOf(uint256 dealId, address provider) external view returns (bool held, uint256 slot) {
        uint256 plusOne = _slotPlusOne[dealId][provider];
        return (plusOne != 0, plusOne == 0 ? 0 : plusOne - 1);
    }

    /// The period the current block is in; `started` is false during the setup window and the
    /// period may be `>= numPeriods` once the deal is over.
    function currentPeriod(uint256 dealId) external view returns (bool started, uint256 period) {
        DealCore memory d = _deal(dealId).core;
        if (block.number < d.startBlock) return (false, 0);
        return (true, _periodOf(d));
    }

    /// First block of `period`; its seed is the hash of the block before.
    function periodStart(uint256 dealId, uint256 period) external view returns (uint256) {
        return _deal(dealId).core.startBlock + period * periodBlocks;
    }

    /// The segment challenged in `period` of a slot (reverts while the seed block's hash is not
    /// available: before the period's seed block is mined or 256 blocks after it).
    function challengeIndex(uint256 dealId, uint256 slot, uint256 period) external view returns (uint256) {
        DealCore memory d = _deal(dealId).core;
        uint256 seedBlock = d.startBlock + period * periodBlocks - 1;
        bytes32 seed = blockhash(seedBlock);
        if (seed == bytes32(0)) revert NoRandomness(seedBlock);
        return _challenge(seed, dealId, slot, d.leafCount);
    }

    /// Whether the slot's holder is in default, and the first period it missed.
    function missedPeriod(uint256 dealId, uint256 slot) external view returns (bool missed, uint256 period) {
        Deal storage deal = _deal(dealId);
        Slot memory s = _slotAt(dealId, slot);
        if (s.provider == address(0) || deal.book.finished) return (false, 0);
        return _missed(deal.core, s);
    }

    /// BIG this deal still holds in escrow: deposit + slashed - paid (0 once finished).
    function escrowOf(uint256 dealId) external view returns (uint256) {
        Deal storage deal = _deal(dealId);
        DealBook memory b = deal.book;
        if (b.finished) return 0;
        uint256 n = uint256(deal.info.k) + deal.info.m;
        uint256 proofs;
        for (uint256 i; i < n; ++i) {
            proofs += _slots[dealId][i].proofs;
        }
        return b.deposit + b.slashed - proofs * deal.core.price;
    }

    // ---------------------------------------------------------------------------------------------
    // Internals

    function _createDeal(DealParams calldata p) private returns (uint256 dealId, uint256 deposit) {
        uint256 n = uint256(p.k) + p.m;
        if (p.k == 0 || n > MAX_SLOTS || p.shardRoots.length != n) {
            revert InvalidErasureParams(p.k, p.m, p.shardRoots.length);
        }
        uint256 seg = p.segmentSize;
        if (seg < MIN_SEGMENT_SIZE || seg > MAX_SEGMENT_SIZE || seg & (seg - 1) != 0) revert InvalidSegmentSize(seg);
        uint256 leaves = SegmentMerkle.leafCount(p.shardSize, seg);
        uint256 depth = SegmentMerkle.depthFor(leaves);
        if (leaves == 0 || depth > SegmentMerkle.MAX_DEPTH) revert InvalidShardSize(p.shardSize);
        if (p.numPeriods < 2) revert InvalidPeriods(p.numPeriods);
        if (p.pricePerSlotPeriod > type(uint112).max) revert PriceTooHigh(p.pricePerSlotPeriod);
        deposit = uint256(p.pricePerSlotPeriod) * n * p.numPeriods;
        if (deposit > type(uint128).max) revert PriceTooHigh(p.pricePerSlotPeriod);

        dealId = ++dealCount;
        uint256 start = block.number + periodBlocks;
        Deal storage deal = _deals[dealId];
        // Every narrowing below was range-checked above (a block number fits 40 bits for ages).
        // forge-lint: disable-start(unsafe-typecast)
        deal.core = DealCore({
            startBlock: uint40(start),
            numPeriods: p.numPeriods,
            depth: uint8(depth),
            segmentSize: uint16(seg),
            leafCount: uint48(leaves),
            price: uint112(p.pricePerSlotPeriod)
        });
        deal.info = DealInfo({client: msg.sender, shardSize: p.shardSize, k: p.k, m: p.m});
        deal.book.deposit = uint128(deposit);
        deal.objectId = p.objectId;
        bytes32[MAX_SLOTS] storage roots = _roots[dealId];
        for (uint256 i; i < n; ++i) {
            roots[i] = p.shardRoots[i];
        }
        _emitCreated(dealId, p, uint64(start), deposit);
        // forge-lint: disable-end(unsafe-typecast)
    }

    function _emitCreated(uint256 dealId, DealParams calldata p, uint64 start, uint256 deposit) private {
        emit DealCreated(
            dealId,
            msg.sender,
            p.objectId,
            p.shardRoots,
            p.shardSize,
            p.segmentSize,
            p.k,
            p.m,
            p.numPeriods,
            p.pricePerSlotPeriod,
            start,
            deposit
        );
    }

    /// Checks and records one proof; never reverts on a bad proof, it returns why instead.
    /// @dev The hot path of the contract, so it reads each storage word once (the deal's core
    /// word, the slot word, the root) and writes the slot word once, unpacking by hand. The bit
    /// layouts are those of `DealCore` and `Slot` (first member in the lowest bits).
    function _prove(uint256 dealId, uint256 slot, bytes calldata segment, bytes32[] calldata siblings)
        private
        returns (ProofStatus)
    {
        uint256 core;
        uint256 c;
        uint256 seedBlock;
        {
            DealCore storage cp = _deals[dealId].core;
            assembly ("memory-safe") {
                core := sload(cp.slot)
            }
            // DealCore: startBlock 0..40, numPeriods 40..72, depth 72..80, segmentSize 80..96,
            // leafCount 96..144, price 144..256.
            uint256 numPeriods = (core >> 40) & 0xffffffff;
            if (numPeriods == 0) return ProofStatus.UnknownDeal;
            uint256 start = core & 0xffffffffff;
            if (block.number < start) return ProofStatus.NotYetProving;
            c = (block.number - start) / periodBlocks;
            if (c >= numPeriods) return ProofStatus.DealOver;
            seedBlock = start + c * periodBlocks - 1;
        }
        if (slot >= MAX_SLOTS) return ProofStatus.NotSlotHolder;

        Slot storage sp = _slots[dealId][slot];
        uint256 word;
        assembly ("memory-safe") {
            word := sload(sp.slot)
        }
        {
            // Slot: provider 0..160, firstPeriod 160..192, lastProvenPlusOne 192..224, proofs 224..256.
            // forge-lint: disable-next-line(unsafe-typecast) the low 160 bits are the address
            if (address(uint160(word)) != msg.sender) return ProofStatus.NotSlotHolder;
            uint256 first = (word >> 160) & 0xffffffff;
            uint256 lastPlusOne = (word >> 192) & 0xffffffff;
            if (c < first) return ProofStatus.NotYetProving;
            if (lastPlusOne > c) return ProofStatus.AlreadyProven;
            // Proven periods are contiguous from firstPeriod: a gap means the holder is in default.
            if (c > first && lastPlusOne != c) return ProofStatus.PeriodMissed;
        }
        {
            bytes32 seed = blockhash(seedBlock);
            if (seed == bytes32(0)) return ProofStatus.NoRandomness;
            uint256 index = _challenge(seed, dealId, slot, (core >> 96) & 0xffffffffffff);
            if (
                segment.length != ((core >> 80) & 0xffff) || siblings.length != ((core >> 72) & 0xff)
                    || SegmentMerkle.rootFromPath(segment, siblings, index) != _roots[dealId][slot]
            ) return ProofStatus.InvalidProof;
        }

        // lastProvenPlusOne = c + 1 (< 2^32: c < numPeriods), proofs + 1 (<= numPeriods).
        word = (word & ((uint256(1) << 192) - 1)) | ((c + 1) << 192) | (((word >> 224) + 1) << 224);
        assembly ("memory-safe") {
            sstore(sp.slot, word)
        }
        _credit(msg.sender, core >> 144);
        emit ProofAccepted(dealId, slot, msg.sender, c);
        return ProofStatus.Accepted;
    }

    /// Ends slot `i` of a finished deal: slashes a holder that missed the last period and frees
    /// the slot. Returns the slot's proof count and what was slashed.
    function _settleSlot(uint256 dealId, uint256 i, DealCore memory d) private returns (uint256, uint256 slashed) {
        Slot memory s = _slots[dealId][i];
        if (s.provider == address(0)) return (s.proofs, 0);
        (bool missed, uint256 period) = _missed(d, s);
        FreeReason reason = FreeReason.DealEnded;
        if (missed) {
            slashed = _slash(s.provider);
            emit SlotMissed(dealId, i, s.provider, period, slashed);
            reason = FreeReason.Missed;
        }
        _free(dealId, i, s, reason);
        return (s.proofs, slashed);
    }

    /// Whether `s`'s holder left a completed period unproven, and the first such period.
    function _missed(DealCore memory d, Slot memory s) private view returns (bool, uint256) {
        if (block.number < d.startBlock) return (false, 0);
        uint256 c = _periodOf(d);
        uint256 completed = c < d.numPeriods ? c : d.numPeriods;
        if (completed == 0 || completed - 1 < s.firstPeriod || s.lastProvenPlusOne >= completed) return (false, 0);
        return (true, s.lastProvenPlusOne == 0 ? s.firstPeriod : s.lastProvenPlusOne);
    }

    /// Slashes `slashBps` of the provider's slashable stake into this contract. A market that the
    /// registry's owner de-authorised slashes nothing, so its deals can still be settled.
    function _slash(address provider) private returns (uint256) {
        uint256 amount = registry.slashableOf(provider) * slashBps / BPS;
        if (amount == 0 || !registry.isMarket(address(this))) return 0;
        return registry.slash(provider, amount, address(this));
    }

    function _free(uint256 dealId, uint256 slot, Slot memory s, FreeReason reason) private {
        _slots[dealId][slot] = Slot(address(0), 0, 0, s.proofs);
        delete _slotPlusOne[dealId][s.provider];
        registry.removeCommitment(s.provider);
        emit SlotFreed(dealId, slot, s.provider, reason);
    }

    /// `uint256(keccak256(abi.encode(seed, dealId, slot))) % leaves`, hashed in scratch memory.
    function _challenge(bytes32 seed, uint256 dealId, uint256 slot, uint256 leaves) private pure returns (uint256 h) {
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, seed)
            mstore(add(p, 0x20), dealId)
            mstore(add(p, 0x40), slot)
            h := mod(keccak256(p, 0x60), leaves)
        }
    }

    function _periodOf(DealCore memory d) private view returns (uint256) {
        return (block.number - d.startBlock) / periodBlocks;
    }

    function _endBlock(DealCore memory d) private view returns (uint256) {
        return uint256(d.startBlock) + uint256(d.numPeriods) * periodBlocks;
    }

    function _deal(uint256 dealId) private view returns (Deal storage deal) {
        deal = _deals[dealId];
        if (deal.core.numPeriods == 0) revert UnknownDeal(dealId);
    }

    function _slotAt(uint256 dealId, uint256 slot) private view returns (Slot memory) {
        if (slot >= MAX_SLOTS) revert InvalidSlot(dealId, slot);
        return _slots[dealId][slot];
    }
}
