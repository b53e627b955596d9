// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {CommonBase} from "forge-std/Base.sol";
import {StdCheats} from "forge-std/StdCheats.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {BIG} from "../../src/BIG.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {ComputeMarket} from "../../src/ComputeMarket.sol";
import {IComputeMarket} from "../../src/interfaces/IComputeMarket.sol";

/// Drives the compute market with random clients, providers and verifiers: posts, accepts,
/// results (some bad), draws, votes, settles, expiries, cancels, claims, pool moves, stake moves
/// and time. Every call it makes is valid (it checks first), so with `fail_on_revert` any revert
/// is a bug. After each action it compares every job's state with the last one seen and counts
/// transitions that are not edges of the state machine.
contract ComputeHandler is CommonBase, StdCheats, StdUtils {
    BIG public token;
    ProviderRegistry public registry;
    ComputeMarket public market;

    address[] public providers;
    address[] public clients;

    /// BIG paid into jobs, refunded by cancels and claimed as rewards, over the run.
    uint256 public posted;
    uint256 public refunded;
    uint256 public claimed;
    /// BIG of failed providers' slashes put back into their jobs' escrow.
    uint256 public refilled;
    /// Transitions seen that the state machine does not allow (must stay 0).
    uint256 public violations;
    string public lastViolation;

    mapping(uint256 jobId => IComputeMarket.State) internal _seen;
    mapping(uint256 jobId => uint32) internal _seenAttempt;
    /// Whether the current result of a job is bad (honest verifiers then mostly vote mismatch).
    mapping(uint256 jobId => bool) internal _bad;

    mapping(bytes32 => uint256) public calls;

    constructor(
        BIG token_,
        ProviderRegistry registry_,
        ComputeMarket market_,
        address[] memory providers_,
        address[] memory clients_
    ) {
        token = token_;
        registry = registry_;
        market = market_;
        providers = providers_;
        clients = clients_;
    }

    function providerCount() external view returns (uint256) {
        return providers.length;
    }

    function clientCount() external view returns (uint256) {
        return clients.length;
    }

    /// Every action is a transaction in a block of its own; afterwards the states are checked.
    modifier tick() {
        vm.roll(block.number + 1);
        _;
        _checkStates();
    }

    // ---------------------------------------------------------------------------------------------
    // Actions

    function post(uint256 who, uint256 payment, uint256 shape) external tick {
        _post(who, payment, shape);
    }

    function accept(uint256 jobSeed, uint256 who) external tick {
        _forEachJob(jobSeed, IComputeMarket.State.Posted, who, _tryAccept);
    }

    function submit(uint256 jobSeed, uint256 badness) external tick {
        _forEachJob(jobSeed, IComputeMarket.State.Accepted, badness, _trySubmit);
    }

    function draw(uint256 jobSeed) external tick {
        _forEachJob(jobSeed, IComputeMarket.State.Committed, 0, _tryDraw);
    }

    function vote(uint256 jobSeed, uint256 noise) external tick {
        _forEachJob(jobSeed, IComputeMarket.State.Drawn, noise, _tryVote);
    }

    function settle(uint256 jobSeed) external tick {
        _forEachJob(jobSeed, IComputeMarket.State.Drawn, 0, _trySettle);
    }

    function expire(uint256 jobSeed) external tick {
        _forEachJob(jobSeed, IComputeMarket.State.Accepted, 0, _tryExpire);
    }

    /// Clients give up on a third of the calls only, so most jobs get to run.
    function cancel(uint256 jobSeed) external tick {
        if (jobSeed % 3 != 0) return;
        _forEachJob(jobSeed / 3, IComputeMarket.State.Posted, 0, _tryCancel);
    }

    function claim(uint256 who) external tick {
        address a = _actor(who);
        uint256 amount = market.claimable(a);
        if (amount == 0) return;
        vm.prank(a);
        claimed += market.claimRewards();
        ++calls["claim"];
    }

    function enroll(uint256 who) external tick {
        address p = providers[who % providers.length];
        if (market.isVerifier(p) || !registry.canServe(p)) return;
        vm.prank(p);
        market.enroll();
        ++calls["enroll"];
    }

    function leave(uint256 who) external tick {
        address p = providers[who % providers.length];
        if (!market.isVerifier(p)) return;
        bool eligible = registry.canServe(p);
        vm.prank(p);
        if (eligible || who & 256 == 0) {
            market.leave();
            ++calls["leave"];
        } else {
            market.evict(p);
            ++calls["evict"];
        }
    }

    /// Stake moves that can make a provider (or verifier) unable to serve, or able again.
    function stakeOp(uint256 kind, uint256 who, uint256 amount) external tick {
        address p = providers[who % providers.length];
        uint256 stake = registry.stakeOf(p);
        kind %= 3;
        if (kind == 0) {
            amount = bound(amount, 1, 500 ether);
            if (token.balanceOf(p) < amount) return;
            vm.prank(p);
            registry.addStake(amount);
            ++calls["addStake"];
        } else if (kind == 1) {
            if (stake == 0) return;
            amount = bound(amount, 1, stake / 3 + 1);
            uint256 floor = registry.commitmentsOf(p) == 0 ? 0 : registry.minStake();
            if (stake - amount < floor) {
                if (stake <= floor) return;
                amount = stake - floor;
            }
            vm.prank(p);
            registry.requestUnbond(amount);
            ++calls["unbond"];
        } else {
            (uint256 unbonding, uint256 ready) = registry.unbondingOf(p);
            if (unbonding == 0 || block.number < ready) return;
            vm.prank(p);
            registry.withdraw();
            ++calls["withdraw"];
        }
    }

    /// A busy block: every job moves one step if `seed` says so (accept, submit, draw, vote,
    /// settle or expire, whichever is valid for it).
    function step(uint256 seed) external tick {
        uint256 n = market.jobCount();
        for (uint256 id = 1; id <= n; ++id) {
            uint256 r = uint256(keccak256(abi.encode(seed, id)));
            if (r & 3 == 0) continue;
            IComputeMarket.State s = market.getJob(id).state;
            if (s == IComputeMarket.State.Posted) {
                _tryAccept(id, r >> 8);
            } else if (s == IComputeMarket.State.Accepted) {
                if (!_trySubmit(id, r >> 8)) _tryExpire(id, 0);
            } else if (s == IComputeMarket.State.Committed) {
                _tryDraw(id, 0);
            } else if (s == IComputeMarket.State.Drawn) {
                // Every verifier still to vote does, then the job is settled if it can be.
                for (uint256 k; k < market.verifiersPerJob(); ++k) {
                    if (!_tryVote(id, r >> (8 + 16 * k))) break;
                }
                _trySettle(id, 0);
            }
        }
        ++calls["step"];
    }

    /// A committed job whose draw comes too late: the seed block's hash is gone, the draw is
    /// delayed to a new seed block.
    function lateDraw(uint256 jobSeed) external tick {
        if (jobSeed % 4 != 0) return; // rarely: it makes every running job miss its deadline
        jobSeed /= 4;
        uint256 n = market.jobCount();
        for (uint256 k; k < n; ++k) {
            uint256 id = 1 + (jobSeed % n + k) % n;
            IComputeMarket.JobView memory j = market.getJob(id);
            if (j.state != IComputeMarket.State.Committed) continue;
            if (block.number <= uint256(j.seedBlock) + 256) vm.roll(uint256(j.seedBlock) + 257 + jobSeed % 8);
            _tryDraw(id, 0);
            return;
        }
    }

    /// Time: mostly a few blocks, now and then past the 256-block reach of BLOCKHASH.
    function roll(uint256 blocks) external {
        uint256 n = blocks % 32 == 0 ? 257 + blocks % 50 : bound(blocks, 1, 8);
        vm.roll(block.number + n);
        ++calls[n > 256 ? bytes32("roll.long") : bytes32("roll")];
        _checkStates();
    }

    // ---------------------------------------------------------------------------------------------
    // One valid call each, or nothing (returns whether it made the call)

    function _post(uint256 who, uint256 payment, uint256 shape) internal {
        address c = clients[who % clients.length];
        IComputeMarket.JobParams memory p;
        bytes memory spec = abi.encodePacked("spec", shape);
        p.kind = uint8(shape % 2);
        p.specHash = keccak256(spec);
        p.tiles = uint32(1 + (shape >> 8) % 64);
        p.payment = bound(payment, 1, 1_000 ether);
        p.runBlocks = uint64(1 + (shape >> 16) % 100);
        p.inputs = new bytes32[]((shape >> 24) % 3);
        if (token.balanceOf(c) < p.payment) return;
        vm.prank(c);
        market.postJob(p, spec);
        posted += p.payment;
        ++calls["post"];
    }

    function _tryAccept(uint256 id, uint256 who) internal returns (bool) {
        IComputeMarket.JobView memory j = market.getJob(id);
        for (uint256 k; k < providers.length; ++k) {
            address p = providers[(who % providers.length + k) % providers.length];
            if (p == j.client || market.barred(id, p) || !registry.canServe(p)) continue;
            vm.prank(p);
            market.accept(id);
            ++calls["accept"];
            return true;
        }
        return false;
    }

    function _trySubmit(uint256 id, uint256 badness) internal returns (bool) {
        IComputeMarket.JobView memory j = market.getJob(id);
        if (block.number > j.deadline) return false;
        _bad[id] = badness % 3 == 0;
        vm.prank(j.provider);
        market.submitResult(id, keccak256(abi.encode(id, j.attempt, badness)), keccak256(abi.encode("out", id)));
        ++calls["submit"];
        return true;
    }

    function _tryDraw(uint256 id, uint256) internal returns (bool) {
        IComputeMarket.JobView memory j = market.getJob(id);
        if (block.number <= j.seedBlock) return false;
        bool delayed = blockhash(j.seedBlock) == bytes32(0);
        market.draw(id);
        ++calls[delayed ? bytes32("draw.delayed") : bytes32("draw")];
        return true;
    }

    /// The first drawn verifier that has not voted votes: mostly the truth, sometimes not.
    function _tryVote(uint256 id, uint256 noise) internal returns (bool) {
        IComputeMarket.JobView memory j = market.getJob(id);
        if (block.number > j.voteDeadline) return false;
        address[] memory drawn = market.verifiersOf(id);
        for (uint256 k; k < drawn.length; ++k) {
            address v = drawn[(noise % drawn.length + k) % drawn.length];
            if (market.hasVoted(id, v)) continue;
            bool honest = (noise >> 8) % 5 != 0;
            vm.prank(v);
            market.vote(id, _bad[id] != honest);
            ++calls["vote"];
            return true;
        }
        return false;
    }

    function _trySettle(uint256 id, uint256) internal returns (bool) {
        IComputeMarket.JobView memory j = market.getJob(id);
        uint256 votes = uint256(j.matches) + j.mismatches;
        if (votes < market.verifiersOf(id).length && block.number <= j.voteDeadline) return false;
        uint256 earnedBefore = _earned();
        market.settle(id);
        IComputeMarket.JobView memory after_ = market.getJob(id);
        // What the job holds now plus what settle credited, less what it held: the refill.
        refilled += after_.escrow + (_earned() - earnedBefore) - j.escrow;
        IComputeMarket.State s = after_.state;
        ++calls[
            s == IComputeMarket.State.Done
                ? bytes32("settle.paid")
                : s == IComputeMarket.State.Committed ? bytes32("settle.redrawn") : bytes32("settle.failed")
        ];
        return true;
    }

    function _tryExpire(uint256 id, uint256) internal returns (bool) {
        if (block.number <= market.getJob(id).deadline) return false;
        market.expire(id);
        ++calls["expire"];
        return true;
    }

    function _tryCancel(uint256 id, uint256) internal returns (bool) {
        IComputeMarket.JobView memory j = market.getJob(id);
        vm.prank(j.client);
        market.cancel(id);
        refunded += j.escrow;
        ++calls["cancel"];
        return true;
    }

    /// Tries `f` on the jobs in `state`, from a random one on, until one call is made.
    function _forEachJob(
        uint256 jobSeed,
        IComputeMarket.State state,
        uint256 arg,
        function(uint256, uint256) internal returns (bool) f
    ) internal {
        uint256 n = market.jobCount();
        for (uint256 k; k < n; ++k) {
            uint256 id = 1 + (jobSeed % n + k) % n;
            if (market.getJob(id).state != state) continue;
            if (f(id, arg)) return;
        }
    }

    function _earned() internal view returns (uint256 sum) {
        for (uint256 i; i < providers.length; ++i) {
            sum += market.earned(providers[i]);
        }
        for (uint256 i; i < clients.length; ++i) {
            sum += market.earned(clients[i]);
        }
    }

    function _actor(uint256 who) internal view returns (address) {
        uint256 i = who % (providers.length + clients.length);
        return i < providers.length ? providers[i] : clients[i - providers.length];
    }

    // ---------------------------------------------------------------------------------------------
    // State machine

    function _checkStates() internal {
        uint256 n = market.jobCount();
        for (uint256 id = 1; id <= n; ++id) {
            IComputeMarket.JobView memory j = market.getJob(id);
            IComputeMarket.State prev = _seen[id];
            uint32 prevAttempt = _seenAttempt[id];
            if (!_allowed(prev, j.state, prevAttempt, j.attempt)) {
                ++violations;
                lastViolation = string.concat(
                    "job ",
                    vm.toString(id),
                    ": ",
                    vm.toString(uint256(prev)),
                    " -> ",
                    vm.toString(uint256(j.state)),
                    ", attempt ",
                    vm.toString(uint256(prevAttempt)),
                    " -> ",
                    vm.toString(uint256(j.attempt))
                );
            }
            _seen[id] = j.state;
            _seenAttempt[id] = j.attempt;
        }
    }

    /// One action moves a job along at most one edge: forward, back to Posted with the attempt
    /// counter one higher after a missed deadline (Accepted) or a failed check (Drawn), or back
    /// to Committed after an inconclusive check (Drawn).
    function _allowed(IComputeMarket.State a, IComputeMarket.State b, uint32 attemptA, uint32 attemptB)
        internal
        pure
        returns (bool)
    {
        if (b == IComputeMarket.State.Posted && (a == IComputeMarket.State.Accepted || a == IComputeMarket.State.Drawn))
        {
            return attemptB == attemptA + 1;
        }
        if (attemptA != attemptB) return false;
        if (a == b) return b != IComputeMarket.State.None && b != IComputeMarket.State.Expired;
        if (a == IComputeMarket.State.None) return b == IComputeMarket.State.Posted;
        if (a == IComputeMarket.State.Posted) {
            return b == IComputeMarket.State.Accepted || b == IComputeMarket.State.Cancelled;
        }
        if (a == IComputeMarket.State.Accepted) return b == IComputeMarket.State.Committed;
        if (a == IComputeMarket.State.Committed) return b == IComputeMarket.State.Drawn;
        if (a == IComputeMarket.State.Drawn) {
            return b == IComputeMarket.State.Done || b == IComputeMarket.State.Committed;
        }
        return false; // Done and Cancelled are final
    }
}
