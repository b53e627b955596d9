// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IRewardLedger} from "./IRewardLedger.sol";

/// @title IStorageMarket
/// @notice Storage deals paid in BIG: a client escrows `price * (k + m) * numPeriods`, registered
/// providers take the `k + m` shard slots and prove one challenged segment per slot and period.
interface IStorageMarket is IRewardLedger {
    /// What a client posts. `shardRoots[i]` commits shard `i` (data shards `0..k`, parity `k..k+m`).
    struct DealParams {
        bytes32 objectId;
        bytes32[] shardRoots;
        uint64 shardSize;
        uint32 segmentSize;
        uint16 k;
        uint16 m;
        uint32 numPeriods;
        uint128 pricePerSlotPeriod;
    }

    /// One proof: the challenged segment of slot `slot` of deal `dealId` (padded to the segment
    /// size) and its `depth` siblings, bottom-up. The segment index is not sent: the contract
    /// derives it (see `challengeIndex`).
    struct Proof {
        uint256 dealId;
        uint256 slot;
        bytes segment;
        bytes32[] siblings;
    }

    /// A slot as stored: its holder, the first period the holder must prove, the last period it
    /// proved plus one (0: none yet), and how many slot-periods were proven and paid in this slot
    /// over the deal's life (all holders together).
    struct Slot {
        address provider;
        uint32 firstPeriod;
        uint32 lastProvenPlusOne;
        uint32 proofs;
    }

    /// Everything known about a deal.
    struct DealView {
        address client;
        bytes32 objectId;
        uint64 shardSize;
        uint32 segmentSize;
        uint16 k;
        uint16 m;
        uint32 numPeriods;
        uint128 pricePerSlotPeriod;
        uint64 startBlock;
        uint64 endBlock;
        uint8 depth;
        uint64 leafCount;
        uint256 deposit;
        uint256 slashed;
        bool finished;
    }

    /// Outcome of one proof; `Accepted` or the reason it was refused.
    enum ProofStatus {
        Accepted,
        UnknownDeal,
        DealOver,
        NotSlotHolder,
        NotYetProving,
        AlreadyProven,
        PeriodMissed,
        NoRandomness,
        InvalidProof
    }

    /// Why a slot became free.
    enum FreeReason {
        Missed,
        Released,
        DealEnded
    }

    /// A deal was created; period `p` covers blocks `[startBlock + p * periodBlocks, +periodBlocks)`.
    event DealCreated(
        uint256 indexed dealId,
        address indexed client,
        bytes32 indexed objectId,
        bytes32[] shardRoots,
        uint64 shardSize,
        uint32 segmentSize,
        uint16 k,
        uint16 m,
        uint32 numPeriods,
        uint128 pricePerSlotPeriod,
        uint64 startBlock,
        uint256 deposit
    );
    /// `provider` holds the slot and must prove it from `firstPeriod` on.
    event SlotTaken(uint256 indexed dealId, uint256 indexed slot, address indexed provider, uint256 firstPeriod);
    /// The proof of `period` was accepted and `pricePerSlotPeriod` credited to `provider`.
    event ProofAccepted(uint256 indexed dealId, uint256 indexed slot, address indexed provider, uint256 period);
    /// A proof in a batch was refused (the batch went on); a single `submitProof` reverts instead.
    event ProofRejected(uint256 indexed dealId, uint256 indexed slot, address indexed provider, ProofStatus status);
    /// `provider` did not prove `period`; `slashed` BIG of its stake went to the deal's refund.
    event SlotMissed(
        uint256 indexed dealId, uint256 indexed slot, address indexed provider, uint256 period, uint256 slashed
    );
    /// The slot is free; any eligible provider may take it.
    event SlotFreed(uint256 indexed dealId, uint256 indexed slot, address indexed provider, FreeReason reason);
    /// The deal is over: `refund` (unspent escrow plus slashed stake) went back to `client`.
    event DealFinished(uint256 indexed dealId, address indexed client, uint256 refund, uint256 paid, uint256 slashed);

    error InvalidConfig();
    error InvalidErasureParams(uint256 k, uint256 m, uint256 roots);
    error InvalidSegmentSize(uint256 segmentSize);
    error InvalidShardSize(uint256 shardSize);
    error InvalidPeriods(uint256 numPeriods);
    error PriceTooHigh(uint256 price);
    error UnknownDeal(uint256 dealId);
    error DealAlreadyFinished(uint256 dealId);
    error DealNotOver(uint256 dealId, uint256 endBlock);
    error TooLateToTake(uint256 dealId);
    error InvalidSlot(uint256 dealId, uint256 slot);
    error SlotOccupied(uint256 dealId, uint256 slot, address provider);
    error SlotEmpty(uint256 dealId, uint256 slot);
    error AlreadyHoldsSlot(uint256 dealId, uint256 slot);
    error NotEligible(address provider);
    error NotSlotHolder(uint256 dealId, uint256 slot, address caller);
    error PeriodMissed(uint256 dealId, uint256 slot, uint256 period);
    error NotMissed(uint256 dealId, uint256 slot);
    error NoRandomness(uint256 seedBlock);
    error EmptyBatch();
    /// A single `submitProof` was refused; `status` says why.
    error ProofFailed(uint256 dealId, uint256 slot, ProofStatus status);

    function createDeal(DealParams calldata params) external returns (uint256 dealId);
    function createDealWithPermit(DealParams calldata params, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        returns (uint256 dealId);
    function takeSlot(uint256 dealId, uint256 slot) external;
    function releaseSlot(uint256 dealId, uint256 slot) external;
    function submitProof(uint256 dealId, uint256 slot, bytes calldata segment, bytes32[] calldata siblings) external;
    function submitProofs(Proof[] calldata proofs) external returns (uint256 accepted);
    function markMissed(uint256 dealId, uint256 slot) external;
    function finishDeal(uint256 dealId) external returns (uint256 refund);
}
