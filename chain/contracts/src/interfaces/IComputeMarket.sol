// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IRewardLedger} from "./IRewardLedger.sol";

/// @title IComputeMarket
/// @notice Compute jobs paid in BIG: a client escrows a payment for a render or inference job, one
/// registered provider runs it and commits to its result, verifiers drawn from block randomness
/// re-execute a few tiles off chain and vote; the provider is paid on a passed check and slashed
/// (the job going back to the market) on a failed one.
interface IComputeMarket is IRewardLedger {
    /// Market settings, fixed at deployment.
    /// - `verifiersPerJob`: verifiers drawn per result (1..16); the fee pool is split in this many shares.
    /// - `tilesPerVerifier`: tiles each drawn verifier re-executes (1..16).
    /// - `voteWindowBlocks`: blocks after the draw in which the drawn verifiers vote (2..200).
    /// - `slashBps`: share of a provider's slashable stake taken for a failed check or a missed
    ///   deadline, in basis points (<= 10000).
    /// - `verifierFeeBps`: share of the job's escrow set aside for the verifiers, in basis points (<= 5000).
    struct Params {
        uint16 verifiersPerJob;
        uint16 tilesPerVerifier;
        uint32 voteWindowBlocks;
        uint16 slashBps;
        uint16 verifierFeeBps;
    }

    /// What a client posts. `kind`: 0 render, 1 infer. `specHash` is `keccak256(spec)` of the job
    /// spec sent alongside (not stored: it is in the `JobPosted` log). `inputs`: BigFile object ids
    /// the job reads (at most 8). `tiles`: units of work the result is committed over (1..65536).
    /// `payment`: BIG escrowed (1..2^128-1). `runBlocks`: blocks the provider has from acceptance
    /// to its result (1..1,000,000).
    struct JobParams {
        uint8 kind;
        bytes32 specHash;
        bytes32[] inputs;
        uint32 tiles;
        uint256 payment;
        uint64 runBlocks;
    }

    /// Where a job is. A job only moves forward (Posted → Accepted → Committed → Drawn → Done;
    /// Posted → Cancelled), except that a missed deadline (Accepted) or a failed check (Drawn)
    /// sends it back to Posted with `attempt + 1`, and an inconclusive check (Drawn) sends it back
    /// to Committed with `round + 1`. `Expired` is reserved and never entered.
    enum State {
        None,
        Posted,
        Accepted,
        Committed,
        Drawn,
        Done,
        Cancelled,
        Expired
    }

    /// Everything known about a job. `payment` is what the client posted; `escrow` what the job
    /// still holds (payment minus the verifier fees of earlier checks, refilled from the slash of
    /// a failed provider up to `payment`; 0 once Done or Cancelled). `round` counts the
    /// inconclusive checks of the current result.
    /// `deadline` is the last block for the provider's result, `seedBlock` the block whose hash
    /// seeds the draw, `voteDeadline` the last block to vote. Fields of a later stage are zero
    /// until it is reached, and are cleared when the job is re-posted.
    struct JobView {
        address client;
        address provider;
        uint8 kind;
        State state;
        bytes32 specHash;
        uint32 tiles;
        uint256 payment;
        uint256 escrow;
        uint64 runBlocks;
        uint64 deadline;
        bytes32 root;
        bytes32 outputId;
        uint64 seedBlock;
        bytes32 seed;
        uint64 voteDeadline;
        uint32 attempt;
        uint32 matches;
        uint32 mismatches;
        uint32 round;
    }

    /// A job was posted and `payment` escrowed. `spec` is the job spec itself (`keccak256(spec) ==
    /// specHash`): agents read it from this log, the contract does not store it.
    event JobPosted(
        uint256 indexed jobId,
        address indexed client,
        uint8 kind,
        bytes32 specHash,
        bytes32[] inputs,
        uint32 tiles,
        uint256 payment,
        uint64 runBlocks,
        bytes spec
    );
    /// `provider` took the job and must submit its result by block `deadline` (inclusive).
    event JobAccepted(uint256 indexed jobId, address indexed provider, uint64 deadline);
    /// The provider committed to its result; the verifiers are drawn from `blockhash(seedBlock)`.
    event ResultSubmitted(
        uint256 indexed jobId, address indexed provider, bytes32 root, bytes32 outputId, uint64 seedBlock
    );
    /// The seed block's hash was out of reach (more than 256 blocks old): nothing was drawn, the
    /// seed is now the hash of the new `seedBlock`; call `draw` again once it is mined.
    event DrawDelayed(uint256 indexed jobId, uint64 seedBlock);
    /// The verifiers of the result were drawn; they vote until block `voteDeadline` (inclusive).
    event VerifiersDrawn(uint256 indexed jobId, bytes32 seed, address[] verifiers, uint64 voteDeadline);
    /// A drawn verifier voted whether its re-executed tiles match the provider's commitment.
    event Voted(uint256 indexed jobId, address indexed verifier, bool matches);
    /// The check passed: `paid` credited to the provider, `fees` to the verifiers who voted.
    event JobPaid(uint256 indexed jobId, address indexed provider, uint256 paid, uint256 fees);
    /// The check failed: `slashed` BIG of the provider's stake was taken; `refilled` of it went
    /// back into the job's escrow (up to its payment) and the rest was burned.
    event JobFailed(
        uint256 indexed jobId,
        address indexed provider,
        uint256 slashed,
        uint256 refilled,
        uint32 mismatches,
        uint32 matches
    );
    /// No side won a majority of the drawn seats: the voters were paid `fees`, the silent ones
    /// left the pool, and check `round` draws new verifiers from `blockhash(seedBlock)`.
    event CheckInconclusive(
        uint256 indexed jobId, uint32 round, uint32 matches, uint32 mismatches, uint256 fees, uint64 seedBlock
    );
    /// The provider let its deadline pass without a result: `slashed` BIG went to the client.
    event JobMissed(uint256 indexed jobId, address indexed provider, uint256 slashed);
    /// The job is open again (after a failed check or a missed deadline); `attempt` counts re-posts.
    event JobReposted(uint256 indexed jobId, uint32 attempt);
    /// The client withdrew its open job and got `refund` back.
    event JobCancelled(uint256 indexed jobId, uint256 refund);
    /// `verifier` joined the pool verifiers are drawn from.
    event VerifierEnrolled(address indexed verifier);
    /// `verifier` left the pool (or was evicted from it).
    event VerifierLeft(address indexed verifier);

    error InvalidConfig();
    error InvalidKind(uint8 kind);
    error SpecHashMismatch(bytes32 specHash, bytes32 actual);
    error SpecTooLong(uint256 length, uint256 maximum);
    error TooManyInputs(uint256 count, uint256 maximum);
    error InvalidTiles(uint256 tiles);
    error InvalidPayment(uint256 payment);
    error InvalidRunBlocks(uint256 runBlocks);
    error UnknownJob(uint256 jobId);
    /// The job is not in a state that allows the call.
    error WrongState(uint256 jobId, State state);
    /// The caller is not registered with at least the minimum stake.
    error NotEligible(address account);
    /// A client cannot take its own job.
    error ClientCannotServe(uint256 jobId, address client);
    /// The provider's result for this job failed a check, or it missed the job's deadline.
    error ProviderBarred(uint256 jobId, address provider);
    error NotJobProvider(uint256 jobId, address caller);
    error NotJobClient(uint256 jobId, address caller);
    error DeadlinePassed(uint256 jobId, uint256 deadline);
    error DeadlineNotPassed(uint256 jobId, uint256 deadline);
    error ZeroRoot(uint256 jobId);
    /// `draw` needs the seed block to be mined first.
    error SeedNotReady(uint256 jobId, uint256 seedBlock);
    error NotDrawnVerifier(uint256 jobId, address caller);
    error AlreadyVoted(uint256 jobId, address verifier);
    error VoteWindowClosed(uint256 jobId, uint256 voteDeadline);
    /// `settle` needs every drawn verifier to have voted or the vote window to be over.
    error VotingOpen(uint256 jobId, uint256 voteDeadline);
    error AlreadyEnrolled(address verifier);
    error NotVerifier(address account);
    /// `evict` only removes pool members that can no longer serve.
    error StillEligible(address verifier);
    error PoolFull(uint256 size);

    function postJob(JobParams calldata p, bytes calldata spec) external returns (uint256 jobId);
    function accept(uint256 jobId) external;
    function submitResult(uint256 jobId, bytes32 root, bytes32 outputId) external;
    function draw(uint256 jobId) external;
    function vote(uint256 jobId, bool matches) external;
    function settle(uint256 jobId) external;
    function expire(uint256 jobId) external;
    function cancel(uint256 jobId) external;
    function enroll() external;
    function leave() external;
    function evict(address verifier) external;

    function getJob(uint256 jobId) external view returns (JobView memory);
    function inputsOf(uint256 jobId) external view returns (bytes32[] memory);
    function verifiersOf(uint256 jobId) external view returns (address[] memory);
    function tilesFor(uint256 jobId, address verifier) external view returns (uint32[] memory);
    function hasVoted(uint256 jobId, address verifier) external view returns (bool);
    function barred(uint256 jobId, address provider) external view returns (bool);
    function jobCount() external view returns (uint256);
    function isVerifier(address account) external view returns (bool);
    function verifierCount() external view returns (uint256);
    function verifiers() external view returns (address[] memory);
    function params() external view returns (Params memory);
}
