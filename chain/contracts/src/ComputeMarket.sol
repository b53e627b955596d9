// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {IComputeMarket} from "./interfaces/IComputeMarket.sol";
import {RewardLedger} from "./RewardLedger.sol";

/// @title ComputeMarket
/// @notice Compute jobs (render, infer) paid in BIG and checked by re-execution.
///
/// Life of a job:
/// 1. `postJob`: the client escrows `payment` BIG; the spec travels in the `JobPosted` log only.
/// 2. `accept`: one registered provider takes it and must submit its result within `runBlocks`.
/// 3. `submitResult`: the provider commits to a Merkle root over the per-tile digests and the
///    output's BigFile object id. The hash of the next block (`seedBlock`) will seed the check.
/// 4. `draw` (anyone, once `seedBlock` is mined): up to `verifiersPerJob` verifiers are drawn from
///    the enrolled pool, see `_choose`. Each re-executes the tiles `tilesFor` gives it off chain.
/// 5. `vote`: each drawn verifier says whether its tiles match, within `voteWindowBlocks`.
/// 6. `settle` (anyone, once all voted or the window closed), see `_outcome`: a majority of the
///    drawn seats voting mismatch fails the result, a majority voting match passes it; otherwise
///    the check is inconclusive and, up to `MAX_ROUNDS` rounds, new verifiers are drawn from a
///    new seed block (the silent ones leave the pool). In the last round mismatch votes must
///    outnumber match votes to fail it. Passed: the provider is credited the escrow less the
///    fees of the verifiers who voted. Failed: the provider is slashed `slashBps` of its stake,
///    barred from the job, and the job is posted again (same spec); the slash first refills the
///    escrow up to the payment (the fees the checks cost the client) and the rest is burned.
///    `expire` slashes a provider that let its deadline pass without a result to the client and
///    posts the job again the same way.
///
/// Why a majority of the drawn seats: one lying verifier must not get an honest provider slashed
/// while the others are silent, and one lazy verifier must not pass a bad result either; a
/// silent seat counts for no side, so an undecided check is drawn again with fresh verifiers and
/// fresh tiles rather than decided by whoever happened to vote. Why the slash is burned and not
/// paid to the client: a client that also runs verifiers would otherwise profit from voting an
/// honest result down; refilling the escrow only makes the client whole for the fees.
///
/// Fees: each verifier that voted (either way) earns `escrow * verifierFeeBps / 10000 /
/// verifiersPerJob`. The shares of drawn verifiers that did not vote, and of seats left empty
/// (fewer eligible verifiers than `verifiersPerJob`), go to the provider on a pass and stay in
/// the escrow on a failure or an inconclusive round. Everything credited is claimed with `claimRewards`, so
/// `BIG.balanceOf(market) == sum of escrow of open jobs + sum of claimable`.
contract ComputeMarket is IComputeMarket, RewardLedger {
    using SafeERC20 for IERC20;

    uint8 public constant KIND_RENDER = 0;
    uint8 public constant KIND_INFER = 1;
    uint256 public constant MAX_VERIFIERS_PER_JOB = 16;
    uint256 public constant MAX_TILES_PER_VERIFIER = 16;
    uint256 public constant MIN_VOTE_WINDOW = 2;
    /// Kept well under 256, the reach of BLOCKHASH, like every window of this market.
    uint256 public constant MAX_VOTE_WINDOW = 200;
    /// Most verifiers enrolled at once, which bounds the gas of `draw`.
    uint256 public constant MAX_POOL = 256;
    uint256 public constant MAX_TILES = 65_536;
    uint256 public constant MAX_RUN_BLOCKS = 1_000_000;
    uint256 public constant MAX_SPEC_BYTES = 16_384;
    uint256 public constant MAX_INPUTS = 8;
    uint256 public constant MAX_FEE_BPS = 5_000;
    uint256 public constant BPS = 10_000;
    /// Checks drawn for one result at most (the first and up to two re-draws when inconclusive).
    uint256 public constant MAX_ROUNDS = 3;
    /// Where the part of a failed provider's slash that does not refill the escrow goes (BIG
    /// has no burn function; nobody holds this address's key).
    address public constant BURN = 0x000000000000000000000000000000000000dEaD;

    // Storage layout: a job takes eight words, each first written by the step that needs it
    // (head, money and specHash by `postJob`; work by `accept`; root and outputId by
    // `submitResult`; seed, check and the drawn list by `draw`); `vote` rewrites the check word
    // only. Block numbers are kept in 48 bits (2.8e14 blocks).

    /// Read by every call on the job (state) and by `accept` (client, runBlocks).
    struct JobHead {
        address client;
        State state;
        uint8 kind;
        uint32 tiles;
        uint32 runBlocks;
    }

    /// The current attempt: who runs it, until when, and the block whose hash seeds its check.
    struct JobWork {
        address provider;
        uint48 deadline;
        uint48 seedBlock;
    }

    struct JobMoney {
        uint128 payment;
        uint128 escrow;
    }

    /// The check of the current result; `votedMask` bit `i` is set once drawn verifier `i` voted.
    /// `attempt` (re-posts so far) survives the reset of the rest when the job is re-posted;
    /// `round` (inconclusive checks of this result) when it is drawn again.
    struct JobCheck {
        uint48 voteDeadline;
        uint8 drawn;
        uint16 votedMask;
        uint8 matches;
        uint8 mismatches;
        uint32 attempt;
        uint8 round;
    }

    enum Outcome {
        Passed,
        Failed,
        Inconclusive
    }

    struct Job {
        JobHead head;
        JobWork work;
        JobMoney money;
        JobCheck check;
        bytes32 specHash;
        bytes32 root;
        bytes32 outputId;
        bytes32 seed;
    }

    /// Where providers are registered and staked.
    IProviderRegistry public immutable registry;
    /// Verifiers drawn per result; also the number of shares the fee pool is cut into.
    uint256 public immutable verifiersPerJob;
    /// Tiles each drawn verifier re-executes.
    uint256 public immutable tilesPerVerifier;
    /// Blocks after the draw during which the drawn verifiers vote.
    uint256 public immutable voteWindowBlocks;
    /// Share of a provider's slashable stake taken for a failed check or a missed deadline.
    uint256 public immutable slashBps;
    /// Share of the escrow paid to the verifiers of a result, in basis points.
    uint256 public immutable verifierFeeBps;
    /// Number of jobs posted; job ids are `1..jobCount`.
    uint256 public jobCount;

    /// Providers whose result for a job failed its check or who missed its deadline.
    mapping(uint256 jobId => mapping(address provider => bool)) public barred;

    mapping(uint256 jobId => Job) private _jobs;
    mapping(uint256 jobId => bytes32[]) private _inputs;
    /// The verifiers drawn for a job's current result: the first `check.drawn` entries. A re-draw
    /// overwrites them, so stale entries beyond `drawn` are never read.
    mapping(uint256 jobId => address[MAX_VERIFIERS_PER_JOB]) private _drawn;
    address[] private _pool;
    mapping(address verifier => uint256) private _poolIndexPlusOne;

    uint256 private constant NOT_DRAWN = type(uint256).max;

    constructor(IERC20 token_, IProviderRegistry registry_, Params memory p) RewardLedger(token_) {
        if (
            address(registry_) == address(0) || registry_.token() != token_ || p.verifiersPerJob == 0
                || p.verifiersPerJob > MAX_VERIFIERS_PER_JOB || p.tilesPerVerifier == 0
                || p.tilesPerVerifier > MAX_TILES_PER_VERIFIER || p.voteWindowBlocks < MIN_VOTE_WINDOW
                || p.voteWindowBlocks > MAX_VOTE_WINDOW || p.slashBps > BPS || p.verifierFeeBps > MAX_FEE_BPS
        ) revert InvalidConfig();
        registry = registry_;
        verifiersPerJob = p.verifiersPerJob;
        tilesPerVerifier = p.tilesPerVerifier;
        voteWindowBlocks = p.voteWindowBlocks;
        slashBps = p.slashBps;
        verifierFeeBps = p.verifierFeeBps;
    }

    // ---------------------------------------------------------------------------------------------
    // Clients

    /// Posts a job and escrows `p.payment` BIG from the caller (approved beforehand), who becomes
    /// the job's client (an account or a contract acting for one). `spec` must hash to
    /// `p.specHash`; it is emitted in `JobPosted` and not stored.
    function postJob(JobParams calldata p, bytes calldata spec) external returns (uint256 jobId) {
        if (p.kind > KIND_INFER) revert InvalidKind(p.kind);
        if (spec.length > MAX_SPEC_BYTES) revert SpecTooLong(spec.length, MAX_SPEC_BYTES);
        bytes32 hash = keccak256(spec);
        if (hash != p.specHash) revert SpecHashMismatch(p.specHash, hash);
        if (p.inputs.length > MAX_INPUTS) revert TooManyInputs(p.inputs.length, MAX_INPUTS);
        if (p.tiles == 0 || p.tiles > MAX_TILES) revert InvalidTiles(p.tiles);
        if (p.payment == 0 || p.payment > type(uint128).max) revert InvalidPayment(p.payment);
        if (p.runBlocks == 0 || p.runBlocks > MAX_RUN_BLOCKS) revert InvalidRunBlocks(p.runBlocks);

        jobId = ++jobCount;
        Job storage job = _jobs[jobId];
        // forge-lint: disable-start(unsafe-typecast) runBlocks <= 1e6 and payment < 2^128, checked above
        job.head = JobHead({
            client: msg.sender, state: State.Posted, kind: p.kind, tiles: p.tiles, runBlocks: uint32(p.runBlocks)
        });
        job.money = JobMoney({payment: uint128(p.payment), escrow: uint128(p.payment)});
        // forge-lint: disable-end(unsafe-typecast)
        job.specHash = hash;
        if (p.inputs.length != 0) _inputs[jobId] = p.inputs;
        _emitPosted(jobId, p, spec);
        token.safeTransferFrom(msg.sender, address(this), p.payment);
    }

    /// Withdraws an open job (not taken by a provider) and refunds its escrow to the client.
    function cancel(uint256 jobId) external {
        Job storage job = _job(jobId);
        JobHead memory h = job.head;
        if (h.client != msg.sender) revert NotJobClient(jobId, msg.sender);
        if (h.state != State.Posted) revert WrongState(jobId, h.state);
        uint256 refund = job.money.escrow;
        job.head.state = State.Cancelled;
        job.money.escrow = 0;
        emit JobCancelled(jobId, refund);
        token.safeTransfer(msg.sender, refund);
    }

    // ---------------------------------------------------------------------------------------------
    // Providers

    /// Takes an open job. The caller must be able to serve (registered, at least the minimum
    /// bonded), must not be the client and must not be barred from the job. It must submit its
    /// result by block `block.number + runBlocks`.
    function accept(uint256 jobId) external {
        Job storage job = _job(jobId);
        JobHead memory h = job.head;
        if (h.state != State.Posted) revert WrongState(jobId, h.state);
        if (msg.sender == h.client) revert ClientCannotServe(jobId, msg.sender);
        if (barred[jobId][msg.sender]) revert ProviderBarred(jobId, msg.sender);
        if (!registry.canServe(msg.sender)) revert NotEligible(msg.sender);

        // forge-lint: disable-next-line(unsafe-typecast) a block number plus at most 1e6
        uint48 deadline = uint48(block.number + h.runBlocks);
        job.head.state = State.Accepted;
        job.work = JobWork({provider: msg.sender, deadline: deadline, seedBlock: 0});
        registry.addCommitment(msg.sender);
        emit JobAccepted(jobId, msg.sender, deadline);
    }

    /// Commits the provider to its result: `root` is the Merkle root over the per-tile digests
    /// (the storage Merkle rules), `outputId` the BigFile object id of the output. The hash of the
    /// next block seeds the draw of its verifiers.
    function submitResult(uint256 jobId, bytes32 root, bytes32 outputId) external {
        Job storage job = _job(jobId);
        State s = job.head.state;
        if (s != State.Accepted) revert WrongState(jobId, s);
        JobWork memory w = job.work;
        if (w.provider != msg.sender) revert NotJobProvider(jobId, msg.sender);
        if (block.number > w.deadline) revert DeadlinePassed(jobId, w.deadline);
        if (root == bytes32(0)) revert ZeroRoot(jobId);

        // forge-lint: disable-next-line(unsafe-typecast) a block number
        uint48 seedBlock = uint48(block.number + 1);
        job.head.state = State.Committed;
        job.root = root;
        job.outputId = outputId;
        job.work.seedBlock = seedBlock;
        emit ResultSubmitted(jobId, msg.sender, root, outputId, seedBlock);
    }

    // ---------------------------------------------------------------------------------------------
    // Verifiers

    /// Joins the verifier pool (at most `MAX_POOL` members). The caller must be able to serve.
    function enroll() external {
        if (_poolIndexPlusOne[msg.sender] != 0) revert AlreadyEnrolled(msg.sender);
        uint256 n = _pool.length;
        if (n >= MAX_POOL) revert PoolFull(n);
        if (!registry.canServe(msg.sender)) revert NotEligible(msg.sender);
        _pool.push(msg.sender);
        _poolIndexPlusOne[msg.sender] = n + 1;
        emit VerifierEnrolled(msg.sender);
    }

    /// Leaves the verifier pool (the last member takes the caller's place). Draws already made
    /// are kept: a drawn verifier that left may still vote on them.
    function leave() external {
        _remove(msg.sender);
    }

    /// Removes a pool member that can no longer serve (unregistered or under the minimum stake);
    /// anyone may call it, so stale members cannot keep the pool full.
    function evict(address verifier) external {
        if (registry.canServe(verifier)) revert StillEligible(verifier);
        _remove(verifier);
    }

    /// Draws the verifiers of a committed result (anyone may call, from the block after
    /// `seedBlock`). `seed = keccak256(abi.encode(blockhash(seedBlock), jobId))`; the verifiers
    /// are chosen from the pool as `_choose` describes and vote until `block.number +
    /// voteWindowBlocks`. When the pool has no eligible member the list is empty and `settle` pays
    /// at once. When the seed block is more than 256 blocks old its hash is gone: then nothing is
    /// drawn, `seedBlock` becomes the next block and `DrawDelayed` is emitted.
    function draw(uint256 jobId) external {
        Job storage job = _job(jobId);
        JobHead memory h = job.head;
        if (h.state != State.Committed) revert WrongState(jobId, h.state);
        JobWork memory w = job.work;
        if (block.number <= w.seedBlock) revert SeedNotReady(jobId, w.seedBlock);
        bytes32 hash = blockhash(w.seedBlock);
        // forge-lint: disable-start(unsafe-typecast) block numbers; drawn <= 16 entries
        if (hash == bytes32(0)) {
            uint48 next = uint48(block.number + 1);
            job.work.seedBlock = next;
            emit DrawDelayed(jobId, next);
            return;
        }
        bytes32 seed = keccak256(abi.encode(hash, jobId));
        address[] memory chosen = _choose(seed, w.provider, h.client);
        address[MAX_VERIFIERS_PER_JOB] storage list = _drawn[jobId];
        for (uint256 i; i < chosen.length; ++i) {
            list[i] = chosen[i];
        }
        uint48 voteDeadline = uint48(block.number + voteWindowBlocks);
        job.head.state = State.Drawn;
        job.seed = seed;
        JobCheck storage c = job.check;
        c.voteDeadline = voteDeadline;
        c.drawn = uint8(chosen.length);
        // forge-lint: disable-end(unsafe-typecast)
        emit VerifiersDrawn(jobId, seed, chosen, voteDeadline);
    }

    /// A drawn verifier's verdict on its tiles (`tilesFor`): `matches` is true when every tile it
    /// re-executed matches the provider's commitment. One vote each, until `voteDeadline`.
    function vote(uint256 jobId, bool matches) external {
        Job storage job = _job(jobId);
        State s = job.head.state;
        if (s != State.Drawn) revert WrongState(jobId, s);
        JobCheck memory c = job.check;
        if (block.number > c.voteDeadline) revert VoteWindowClosed(jobId, c.voteDeadline);
        uint256 i = _position(jobId, c.drawn, msg.sender);
        if (i == NOT_DRAWN) revert NotDrawnVerifier(jobId, msg.sender);
        uint256 mask = c.votedMask;
        if ((mask >> i) & 1 == 1) revert AlreadyVoted(jobId, msg.sender);
        // forge-lint: disable-next-line(unsafe-typecast) i < 16
        c.votedMask = uint16(mask | (2 ** i));
        if (matches) ++c.matches;
        else ++c.mismatches;
        job.check = c;
        emit Voted(jobId, msg.sender, matches);
    }

    // ---------------------------------------------------------------------------------------------
    // Anyone

    /// Ends the check of a result once every drawn verifier voted or the vote window closed:
    /// pays the verifiers who voted, then, by `_outcome`, pays the provider, or slashes it and
    /// posts the job again, or (inconclusive) removes the silent verifiers from the pool and
    /// draws the check again from the next block's hash.
    function settle(uint256 jobId) external {
        Job storage job = _job(jobId);
        State s = job.head.state;
        if (s != State.Drawn) revert WrongState(jobId, s);
        JobCheck memory c = job.check;
        uint256 voted = uint256(c.matches) + c.mismatches;
        if (voted < c.drawn && block.number <= c.voteDeadline) revert VotingOpen(jobId, c.voteDeadline);

        uint256 escrow = job.money.escrow;
        uint256 fees = _payVerifiers(jobId, c, escrow, voted);
        address provider = job.work.provider;
        Outcome outcome = _outcome(c);
        if (outcome == Outcome.Failed) {
            _fail(jobId, job, provider, escrow - fees, c);
        } else if (outcome == Outcome.Inconclusive) {
            _redraw(jobId, job, escrow - fees, fees, c);
        } else {
            uint256 paid = escrow - fees;
            job.head.state = State.Done;
            job.money.escrow = 0;
            _credit(provider, paid);
            emit JobPaid(jobId, provider, paid, fees);
            registry.removeCommitment(provider);
        }
    }

    /// Ends the attempt of a provider whose deadline passed without a result: slashes it to the
    /// client, bars it from the job and posts the job again.
    function expire(uint256 jobId) external {
        Job storage job = _job(jobId);
        JobHead memory h = job.head;
        if (h.state != State.Accepted) revert WrongState(jobId, h.state);
        uint256 deadline = job.work.deadline;
        if (block.number <= deadline) revert DeadlineNotPassed(jobId, deadline);
        address provider = job.work.provider;
        uint32 attempt = _repost(jobId, job, provider);
        uint256 slashed = _slash(provider, h.client);
        registry.removeCommitment(provider);
        emit JobMissed(jobId, provider, slashed);
        emit JobReposted(jobId, attempt);
    }

    // ---------------------------------------------------------------------------------------------
    // Views

    /// Everything about a job.
    function getJob(uint256 jobId) external view returns (JobView memory v) {
        Job storage job = _job(jobId);
        JobHead memory h = job.head;
        JobWork memory w = job.work;
        JobCheck memory c = job.check;
        v.client = h.client;
        v.provider = w.provider;
        v.kind = h.kind;
        v.state = h.state;
        v.specHash = job.specHash;
        v.tiles = h.tiles;
        v.payment = job.money.payment;
        v.escrow = job.money.escrow;
        v.runBlocks = h.runBlocks;
        v.deadline = w.deadline;
        v.seedBlock = w.seedBlock;
        v.root = job.root;
        v.outputId = job.outputId;
        v.seed = job.seed;
        v.voteDeadline = c.voteDeadline;
        v.attempt = c.attempt;
        v.matches = c.matches;
        v.mismatches = c.mismatches;
        v.round = c.round;
    }

    /// The object ids the job reads.
    function inputsOf(uint256 jobId) external view returns (bytes32[] memory) {
        _job(jobId);
        return _inputs[jobId];
    }

    /// The verifiers drawn for the job's current result, in draw order (empty before the draw
    /// and after a re-post). A verifier's position here is the `i` of `tilesFor`.
    function verifiersOf(uint256 jobId) external view returns (address[] memory list) {
        Job storage job = _job(jobId);
        uint256 n = job.check.drawn;
        list = new address[](n);
        for (uint256 i; i < n; ++i) {
            list[i] = _drawn[jobId][i];
        }
    }

    /// The tiles `verifier` must re-execute, for its position `i` in `verifiersOf(jobId)`:
    /// ```
    /// tile[j] = uint32(uint256(keccak256(abi.encode(seed, i, j))) % tiles)   for j in 0..tilesPerVerifier
    /// ```
    /// where `seed` is the job's seed (`getJob(jobId).seed`, emitted in `VerifiersDrawn`) and
    /// `abi.encode` gives 96 bytes: the 32-byte seed, then `i` and `j` as big-endian 32-byte
    /// words. Tiles may repeat (within a verifier and across verifiers): each index is an
    /// independent draw, which keeps the formula short to recompute. Reverts unless the job's
    /// current result was drawn (state Drawn or Done) and `verifier` is one of its verifiers.
    function tilesFor(uint256 jobId, address verifier) external view returns (uint32[] memory list) {
        Job storage job = _job(jobId);
        JobHead memory h = job.head;
        if (h.state != State.Drawn && h.state != State.Done) revert WrongState(jobId, h.state);
        uint256 i = _position(jobId, job.check.drawn, verifier);
        if (i == NOT_DRAWN) revert NotDrawnVerifier(jobId, verifier);
        bytes32 seed = job.seed;
        uint256 n = tilesPerVerifier;
        list = new uint32[](n);
        for (uint256 j; j < n; ++j) {
            // forge-lint: disable-next-line(unsafe-typecast) the remainder is below tiles <= 65536
            list[j] = uint32(uint256(keccak256(abi.encode(seed, i, j))) % h.tiles);
        }
    }

    /// Whether `verifier` was drawn for the job's current result and has voted.
    function hasVoted(uint256 jobId, address verifier) external view returns (bool) {
        Job storage job = _job(jobId);
        JobCheck memory c = job.check;
        uint256 i = _position(jobId, c.drawn, verifier);
        return i != NOT_DRAWN && (c.votedMask >> i) & 1 == 1;
    }

    function isVerifier(address account) external view returns (bool) {
        return _poolIndexPlusOne[account] != 0;
    }

    function verifierCount() external view returns (uint256) {
        return _pool.length;
    }

    /// The verifier pool, in its current order (the order `_choose` shuffles).
    function verifiers() external view returns (address[] memory) {
        return _pool;
    }

    /// The settings this market was deployed with.
    function params() external view returns (Params memory) {
        // forge-lint: disable-start(unsafe-typecast) each was a field of the constructor's Params
        return Params({
            verifiersPerJob: uint16(verifiersPerJob),
            tilesPerVerifier: uint16(tilesPerVerifier),
            voteWindowBlocks: uint32(voteWindowBlocks),
            slashBps: uint16(slashBps),
            verifierFeeBps: uint16(verifierFeeBps)
        });
        // forge-lint: disable-end(unsafe-typecast)
    }

    // ---------------------------------------------------------------------------------------------
    // Internals

    function _emitPosted(uint256 jobId, JobParams calldata p, bytes calldata spec) private {
        emit JobPosted(jobId, msg.sender, p.kind, p.specHash, p.inputs, p.tiles, p.payment, p.runBlocks, spec);
    }

    /// Picks up to `verifiersPerJob` distinct verifiers by a partial Fisher–Yates shuffle of the
    /// pool (`n = verifierCount()` members, in the order `verifiers()` returns at the draw):
    /// ```
    /// for i = 0, 1, ... while i < n and fewer than verifiersPerJob are chosen:
    ///     j = i + uint256(keccak256(abi.encode(seed, i))) % (n - i)    // 64 bytes: seed, uint256 i
    ///     swap positions i and j of the (memory) pool
    ///     the member now at position i is chosen iff it is neither the job's provider nor its
    ///     client and registry.canServe(member)
    /// ```
    /// The chosen are distinct (each position is visited once) and listed in the order chosen.
    /// The pool is not copied up front: a member is read from storage when its position is first
    /// touched, so gas grows with the positions visited (at most `MAX_POOL`).
    function _choose(bytes32 seed, address provider, address client) private view returns (address[] memory chosen) {
        uint256 n = _pool.length;
        uint256 want = verifiersPerJob < n ? verifiersPerJob : n;
        chosen = new address[](want);
        // moved[k] != 0: the member the shuffle put at position k; 0: still _pool[k].
        address[] memory moved = new address[](n);
        uint256 count;
        for (uint256 i; i < n && count < want; ++i) {
            uint256 j = i + uint256(keccak256(abi.encode(seed, i))) % (n - i);
            address picked = moved[j];
            if (picked == address(0)) picked = _pool[j];
            if (j != i) {
                address here = moved[i];
                moved[j] = here == address(0) ? _pool[i] : here;
            }
            if (picked != provider && picked != client && registry.canServe(picked)) chosen[count++] = picked;
        }
        assembly ("memory-safe") {
            mstore(chosen, count)
        }
    }

    /// Credits each drawn verifier that voted its share of the fee pool; returns the total paid.
    function _payVerifiers(uint256 jobId, JobCheck memory c, uint256 escrow, uint256 voted)
        private
        returns (uint256 fees)
    {
        uint256 share = escrow * verifierFeeBps / BPS / verifiersPerJob;
        if (share == 0 || voted == 0) return 0;
        address[MAX_VERIFIERS_PER_JOB] storage list = _drawn[jobId];
        for (uint256 i; i < c.drawn; ++i) {
            if ((c.votedMask >> i) & 1 == 1) _credit(list[i], share);
        }
        return share * voted;
    }

    /// The verdict of a closed check (`c`, its votes in): a strict majority of the drawn seats
    /// decides; without one the check is drawn again, except in round `MAX_ROUNDS - 1`, where
    /// the result fails iff mismatch votes outnumber match votes (silence and ties pass). No
    /// verifier drawn at all (an empty pool) passes at once.
    function _outcome(JobCheck memory c) private pure returns (Outcome) {
        uint256 half = uint256(c.drawn) / 2;
        if (c.mismatches > half) return Outcome.Failed;
        if (c.matches > half || c.drawn == 0) return Outcome.Passed;
        if (uint256(c.round) + 1 < MAX_ROUNDS) return Outcome.Inconclusive;
        return c.mismatches > c.matches ? Outcome.Failed : Outcome.Passed;
    }

    /// A failed check: the job keeps `escrow` (its escrow less the fees paid), the provider is
    /// slashed and barred, and the job is open again. The slash refills the escrow up to the
    /// payment; the rest goes to `BURN`.
    function _fail(uint256 jobId, Job storage job, address provider, uint256 escrow, JobCheck memory c) private {
        uint32 attempt = _repost(jobId, job, provider);
        delete job.root;
        delete job.outputId;
        delete job.seed;
        uint256 slashed = _slash(provider, address(this));
        uint256 room = job.money.payment - escrow;
        uint256 refilled = slashed < room ? slashed : room;
        // forge-lint: disable-next-line(unsafe-typecast) at most the uint128 payment
        job.money.escrow = uint128(escrow + refilled);
        registry.removeCommitment(provider);
        emit JobFailed(jobId, provider, slashed, refilled, c.mismatches, c.matches);
        emit JobReposted(jobId, attempt);
        if (slashed > refilled) token.safeTransfer(BURN, slashed - refilled);
    }

    /// An inconclusive check: the drawn verifiers that did not vote leave the pool (a drawn
    /// verifier that left already is skipped), the job keeps `escrow` (less the fees paid) and
    /// goes back to Committed with a new seed block, for `draw` to pick new verifiers and tiles.
    function _redraw(uint256 jobId, Job storage job, uint256 escrow, uint256 fees, JobCheck memory c) private {
        address[MAX_VERIFIERS_PER_JOB] storage list = _drawn[jobId];
        for (uint256 i; i < c.drawn; ++i) {
            address v = list[i];
            if ((c.votedMask >> i) & 1 == 0 && _poolIndexPlusOne[v] != 0) _remove(v);
        }
        // forge-lint: disable-start(unsafe-typecast) below the uint128 escrow; a block number; round < MAX_ROUNDS
        job.money.escrow = uint128(escrow);
        uint48 seedBlock = uint48(block.number + 1);
        uint8 round = c.round + 1;
        // forge-lint: disable-end(unsafe-typecast)
        job.head.state = State.Committed;
        job.work.seedBlock = seedBlock;
        delete job.seed;
        job.check = JobCheck({
            voteDeadline: 0, drawn: 0, votedMask: 0, matches: 0, mismatches: 0, attempt: c.attempt, round: round
        });
        emit CheckInconclusive(jobId, round, c.matches, c.mismatches, fees, seedBlock);
    }

    /// Bars `provider` from the job and opens the job again for the next attempt: the provider,
    /// its deadline and seed block and the check are cleared, the attempt counter goes up.
    function _repost(uint256 jobId, Job storage job, address provider) private returns (uint32 attempt) {
        barred[jobId][provider] = true;
        job.head.state = State.Posted;
        delete job.work;
        attempt = job.check.attempt + 1;
        job.check =
            JobCheck({voteDeadline: 0, drawn: 0, votedMask: 0, matches: 0, mismatches: 0, attempt: attempt, round: 0});
    }

    /// Slashes `slashBps` of the provider's slashable stake to `beneficiary`. A market that the
    /// registry's owner de-authorised slashes nothing, so its jobs can still be settled.
    function _slash(address provider, address beneficiary) private returns (uint256) {
        uint256 amount = registry.slashableOf(provider) * slashBps / BPS;
        if (amount == 0 || !registry.isMarket(address(this))) return 0;
        return registry.slash(provider, amount, beneficiary);
    }

    function _remove(address verifier) private {
        uint256 at = _poolIndexPlusOne[verifier];
        if (at == 0) revert NotVerifier(verifier);
        uint256 last = _pool.length;
        if (at != last) {
            address moved = _pool[last - 1];
            _pool[at - 1] = moved;
            _poolIndexPlusOne[moved] = at;
        }
        _pool.pop();
        delete _poolIndexPlusOne[verifier];
        emit VerifierLeft(verifier);
    }

    /// Position of `who` among the first `n` drawn verifiers of the job, or `NOT_DRAWN`.
    function _position(uint256 jobId, uint256 n, address who) private view returns (uint256) {
        address[MAX_VERIFIERS_PER_JOB] storage list = _drawn[jobId];
        for (uint256 i; i < n; ++i) {
            if (list[i] == who) return i;
        }
        return NOT_DRAWN;
    }

    function _job(uint256 jobId) private view returns (Job storage job) {
        job = _jobs[jobId];
        if (job.head.state == State.None) revert UnknownJob(jobId);
    }
}
