// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test, console2} from "forge-std/Test.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {BIG} from "../src/BIG.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {ComputeMarket} from "../src/ComputeMarket.sol";
import {IComputeMarket} from "../src/interfaces/IComputeMarket.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";
import {IRewardLedger} from "../src/interfaces/IRewardLedger.sol";

/// A deployed BIG + registry + compute market, a client, ten registered providers, and helpers
/// that walk a job through its states.
abstract contract ComputeBase is Test {
    uint256 constant SUPPLY = 1_000_000_000 ether;
    uint256 constant MIN_STAKE = 1_000 ether;
    uint256 constant STAKE = 2 * MIN_STAKE;
    uint256 constant UNBONDING_BLOCKS = 50;
    uint256 constant PAYMENT = 100 ether;
    uint64 constant RUN_BLOCKS = 50;
    uint32 constant TILES = 64;
    uint16 constant VERIFIERS = 3;
    uint16 constant TILES_PER_VERIFIER = 4;
    uint32 constant VOTE_WINDOW = 20;
    uint16 constant SLASH_BPS = 1_000; // 10 %
    uint16 constant FEE_BPS = 1_000; // 10 %

    BIG token;
    ProviderRegistry registry;
    ComputeMarket market;
    address client = makeAddr("client");
    address[] providers;
    bytes spec = bytes('{"version":1,"kind":"render","scene":{"width":64,"height":64}}');

    function setUp() public virtual {
        vm.roll(1000);
        token = new BIG(address(this), SUPPLY);
        registry = new ProviderRegistry(token, MIN_STAKE, UNBONDING_BLOCKS, address(this));
        market = _deploy(_config(VERIFIERS, FEE_BPS, SLASH_BPS));
        token.transfer(client, 10_000_000 ether);
        vm.prank(client);
        token.approve(address(market), type(uint256).max);
        for (uint256 i; i < 10; ++i) {
            address p = makeAddr(string.concat("provider", vm.toString(i)));
            providers.push(p);
            token.transfer(p, 100_000 ether);
            vm.startPrank(p);
            token.approve(address(registry), type(uint256).max);
            registry.register(abi.encodePacked(hex"0024080112", keccak256(abi.encode(p))), STAKE);
            vm.stopPrank();
        }
    }

    function _config(uint16 verifiers, uint16 feeBps, uint16 slashBps)
        internal
        pure
        returns (IComputeMarket.Params memory)
    {
        return IComputeMarket.Params({
            verifiersPerJob: verifiers,
            tilesPerVerifier: TILES_PER_VERIFIER,
            voteWindowBlocks: VOTE_WINDOW,
            slashBps: slashBps,
            verifierFeeBps: feeBps
        });
    }

    /// A fresh market on the same token and registry, authorised to slash, funded by the client.
    function _deploy(IComputeMarket.Params memory c) internal returns (ComputeMarket m) {
        m = new ComputeMarket(token, registry, c);
        registry.setMarket(address(m), true);
        vm.prank(client);
        token.approve(address(m), type(uint256).max);
    }

    function _jobParams() internal view returns (IComputeMarket.JobParams memory p) {
        p.kind = 0;
        p.specHash = keccak256(spec);
        p.tiles = TILES;
        p.payment = PAYMENT;
        p.runBlocks = RUN_BLOCKS;
    }

    function _post() internal returns (uint256 id) {
        vm.prank(client);
        id = market.postJob(_jobParams(), spec);
    }

    function _accept(address p, uint256 id) internal {
        vm.prank(p);
        market.accept(id);
    }

    function _submit(address p, uint256 id) internal {
        vm.prank(p);
        market.submitResult(id, keccak256(abi.encode("root", id)), keccak256(abi.encode("output", id)));
    }

    /// Enrols providers `from..to-1` as verifiers.
    function _enroll(uint256 from, uint256 to) internal {
        for (uint256 i = from; i < to; ++i) {
            vm.prank(providers[i]);
            market.enroll();
        }
    }

    /// Posts a job, has `p` accept it and submit a result; returns the job id.
    function _committed(address p) internal returns (uint256 id) {
        id = _post();
        _accept(p, id);
        _submit(p, id);
    }

    /// Mines the seed block and draws.
    function _draw(uint256 id) internal returns (address[] memory drawn) {
        vm.roll(market.getJob(id).seedBlock + 1);
        market.draw(id);
        drawn = market.verifiersOf(id);
    }

    function _vote(address v, uint256 id, bool matches) internal {
        vm.prank(v);
        market.vote(id, matches);
    }

    /// Lets the vote window close, then settles.
    function _settleAfterTheWindow(uint256 id) internal {
        vm.roll(block.number + VOTE_WINDOW + 1);
        market.settle(id);
    }

    function _state(uint256 id) internal view returns (IComputeMarket.State) {
        return market.getJob(id).state;
    }

    function _share(uint256 escrow) internal view returns (uint256) {
        return escrow * market.verifierFeeBps() / 10_000 / market.verifiersPerJob();
    }

    /// The market holds exactly the escrow of its jobs plus what every actor may claim.
    function _assertBooks() internal view {
        uint256 sum;
        for (uint256 id = 1; id <= market.jobCount(); ++id) {
            sum += market.getJob(id).escrow;
        }
        for (uint256 i; i < providers.length; ++i) {
            sum += market.claimable(providers[i]);
        }
        sum += market.claimable(client);
        assertEq(token.balanceOf(address(market)), sum, "market balance != escrow + claimable");
    }
}

/// Unit tests: every rule and every revert of the compute market.
contract ComputeMarketTest is ComputeBase {
    // ---------------------------------------------------------------------------------------------
    // Constructor

    function test_constructor_setsConfig() public view {
        assertEq(address(market.token()), address(token));
        assertEq(address(market.registry()), address(registry));
        assertEq(market.verifiersPerJob(), VERIFIERS);
        assertEq(market.tilesPerVerifier(), TILES_PER_VERIFIER);
        assertEq(market.voteWindowBlocks(), VOTE_WINDOW);
        assertEq(market.slashBps(), SLASH_BPS);
        assertEq(market.verifierFeeBps(), FEE_BPS);
        IComputeMarket.Params memory p = market.params();
        assertEq(p.verifiersPerJob, VERIFIERS);
        assertEq(p.tilesPerVerifier, TILES_PER_VERIFIER);
        assertEq(p.voteWindowBlocks, VOTE_WINDOW);
        assertEq(p.slashBps, SLASH_BPS);
        assertEq(p.verifierFeeBps, FEE_BPS);
        assertEq(market.jobCount(), 0);
        assertEq(market.verifierCount(), 0);
    }

    function test_constructor_rejectsBadConfig() public {
        IComputeMarket.Params[9] memory bad;
        for (uint256 i; i < bad.length; ++i) {
            bad[i] = _config(VERIFIERS, FEE_BPS, SLASH_BPS);
        }
        bad[0].verifiersPerJob = 0;
        bad[1].verifiersPerJob = 17;
        bad[2].tilesPerVerifier = 0;
        bad[3].tilesPerVerifier = 17;
        bad[4].voteWindowBlocks = 1;
        bad[5].voteWindowBlocks = 201;
        bad[6].slashBps = 10_001;
        bad[7].verifierFeeBps = 5_001;
        bad[8].voteWindowBlocks = type(uint32).max;
        for (uint256 i; i < bad.length; ++i) {
            vm.expectRevert(IComputeMarket.InvalidConfig.selector);
            new ComputeMarket(token, registry, bad[i]);
        }
        BIG other = new BIG(address(this), 1);
        vm.expectRevert(IComputeMarket.InvalidConfig.selector);
        new ComputeMarket(other, registry, _config(VERIFIERS, FEE_BPS, SLASH_BPS));
        vm.expectRevert(IComputeMarket.InvalidConfig.selector);
        new ComputeMarket(token, IProviderRegistry(address(0)), _config(VERIFIERS, FEE_BPS, SLASH_BPS));
    }

    function test_constructor_acceptsTheBounds() public {
        new ComputeMarket(token, registry, IComputeMarket.Params(1, 1, 2, 0, 0));
        ComputeMarket m = new ComputeMarket(token, registry, IComputeMarket.Params(16, 16, 200, 10_000, 5_000));
        assertEq(m.verifiersPerJob(), 16);
        assertEq(m.voteWindowBlocks(), 200);
    }

    // ---------------------------------------------------------------------------------------------
    // postJob

    function test_postJob_escrowsAndRecords() public {
        IComputeMarket.JobParams memory p = _jobParams();
        p.kind = 1;
        p.inputs = new bytes32[](2);
        p.inputs[0] = keccak256("model");
        p.inputs[1] = keccak256("input");
        vm.expectEmit(address(market));
        emit IComputeMarket.JobPosted(1, client, 1, p.specHash, p.inputs, TILES, PAYMENT, RUN_BLOCKS, spec);
        vm.prank(client);
        uint256 id = market.postJob(p, spec);
        assertEq(id, 1);
        assertEq(market.jobCount(), 1);
        assertEq(token.balanceOf(address(market)), PAYMENT);

        IComputeMarket.JobView memory v = market.getJob(id);
        assertEq(v.client, client);
        assertEq(v.provider, address(0));
        assertEq(v.kind, 1);
        assertEq(uint8(v.state), uint8(IComputeMarket.State.Posted));
        assertEq(v.specHash, keccak256(spec));
        assertEq(v.tiles, TILES);
        assertEq(v.payment, PAYMENT);
        assertEq(v.escrow, PAYMENT);
        assertEq(v.runBlocks, RUN_BLOCKS);
        assertEq(v.deadline, 0);
        assertEq(v.root, bytes32(0));
        assertEq(v.seedBlock, 0);
        assertEq(v.attempt, 0);
        bytes32[] memory inputs = market.inputsOf(id);
        assertEq(inputs.length, 2);
        assertEq(inputs[0], p.inputs[0]);
        assertEq(inputs[1], p.inputs[1]);
        assertEq(market.verifiersOf(id).length, 0);

        assertEq(_post(), 2);
        assertEq(market.inputsOf(2).length, 0);
        _assertBooks();
    }

    function test_postJob_acceptsTheBounds() public {
        IComputeMarket.JobParams memory p = _jobParams();
        bytes memory big = new bytes(16_384);
        p.specHash = keccak256(big);
        p.tiles = 65_536;
        p.runBlocks = 1_000_000;
        p.payment = 1;
        p.inputs = new bytes32[](8);
        vm.prank(client);
        uint256 id = market.postJob(p, big);
        assertEq(market.getJob(id).tiles, 65_536);
        assertEq(market.inputsOf(id).length, 8);
        // An empty spec is fine too (its hash is keccak256("")).
        p.specHash = keccak256("");
        vm.prank(client);
        market.postJob(p, "");
    }

    function test_postJob_rejections() public {
        IComputeMarket.JobParams memory p = _jobParams();
        vm.startPrank(client);

        p.kind = 2;
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.InvalidKind.selector, 2));
        market.postJob(p, spec);
        p.kind = 0;

        bytes memory long = new bytes(16_385);
        p.specHash = keccak256(long);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.SpecTooLong.selector, 16_385, 16_384));
        market.postJob(p, long);

        p.specHash = keccak256("other");
        vm.expectRevert(
            abi.encodeWithSelector(IComputeMarket.SpecHashMismatch.selector, keccak256("other"), keccak256(spec))
        );
        market.postJob(p, spec);
        p.specHash = keccak256(spec);

        p.inputs = new bytes32[](9);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.TooManyInputs.selector, 9, 8));
        market.postJob(p, spec);
        p.inputs = new bytes32[](0);

        p.tiles = 0;
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.InvalidTiles.selector, 0));
        market.postJob(p, spec);
        p.tiles = 65_537;
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.InvalidTiles.selector, 65_537));
        market.postJob(p, spec);
        p.tiles = TILES;

        p.payment = 0;
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.InvalidPayment.selector, 0));
        market.postJob(p, spec);
        p.payment = uint256(type(uint128).max) + 1;
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.InvalidPayment.selector, p.payment));
        market.postJob(p, spec);
        p.payment = PAYMENT;

        p.runBlocks = 0;
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.InvalidRunBlocks.selector, 0));
        market.postJob(p, spec);
        p.runBlocks = 1_000_001;
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.InvalidRunBlocks.selector, 1_000_001));
        market.postJob(p, spec);
        vm.stopPrank();

        assertEq(market.jobCount(), 0);
        assertEq(token.balanceOf(address(market)), 0);
    }

    function test_postJob_needsAnAllowance() public {
        address poor = makeAddr("poor");
        token.transfer(poor, PAYMENT);
        vm.prank(poor);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, PAYMENT)
        );
        market.postJob(_jobParams(), spec);
    }

    /// A contract (the future cross-chain router) can be a client: it posts, is refunded, slashed
    /// stake goes to it.
    function test_postJob_contractClient() public {
        token.approve(address(market), type(uint256).max);
        uint256 before = token.balanceOf(address(this));
        uint256 id = market.postJob(_jobParams(), spec);
        assertEq(market.getJob(id).client, address(this));
        _accept(providers[0], id);
        vm.roll(block.number + RUN_BLOCKS + 1);
        market.expire(id);
        assertEq(token.balanceOf(address(this)), before - PAYMENT + STAKE * SLASH_BPS / 10_000);
        market.cancel(id);
        assertEq(token.balanceOf(address(this)), before + STAKE * SLASH_BPS / 10_000);
    }

    // ---------------------------------------------------------------------------------------------
    // accept

    function test_accept_recordsAndCommits() public {
        uint256 id = _post();
        address p = providers[0];
        vm.expectEmit(address(registry));
        emit IProviderRegistry.CommitmentsChanged(p, address(market), 1);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobAccepted(id, p, uint64(block.number + RUN_BLOCKS));
        _accept(p, id);
        IComputeMarket.JobView memory v = market.getJob(id);
        assertEq(uint8(v.state), uint8(IComputeMarket.State.Accepted));
        assertEq(v.provider, p);
        assertEq(v.deadline, block.number + RUN_BLOCKS);
        assertEq(registry.commitmentsOf(p), 1);
        assertEq(registry.commitmentsBy(address(market), p), 1);
    }

    function test_accept_rejections() public {
        uint256 id = _post();
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 0));
        market.accept(0);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 2));
        market.accept(2);

        // The client may not serve its own job, even when it is a registered provider.
        _registerClient();
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.ClientCannotServe.selector, id, client));
        market.accept(id);

        address stranger = makeAddr("stranger");
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotEligible.selector, stranger));
        market.accept(id);

        address weak = providers[1];
        vm.prank(weak);
        registry.requestUnbond(MIN_STAKE + 1);
        vm.prank(weak);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotEligible.selector, weak));
        market.accept(id);

        _accept(providers[0], id);
        vm.prank(providers[2]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Accepted));
        market.accept(id);
    }

    function test_accept_failsWhenTheMarketIsNotAuthorised() public {
        uint256 id = _post();
        registry.setMarket(address(market), false);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotMarket.selector, address(market)));
        market.accept(id);
    }

    function test_acceptedJobCannotBeUnbondedFrom() public {
        uint256 id = _post();
        _accept(providers[0], id);
        vm.prank(providers[0]);
        vm.expectRevert(
            abi.encodeWithSelector(IProviderRegistry.CommittedStakeBelowMinimum.selector, MIN_STAKE - 1, MIN_STAKE)
        );
        registry.requestUnbond(MIN_STAKE + 1);
    }

    // ---------------------------------------------------------------------------------------------
    // submitResult

    function test_submitResult_recordsTheCommitment() public {
        uint256 id = _post();
        address p = providers[0];
        _accept(p, id);
        vm.roll(block.number + RUN_BLOCKS); // the deadline itself is still in time
        bytes32 root = keccak256("root");
        bytes32 out = keccak256("out");
        vm.expectEmit(address(market));
        emit IComputeMarket.ResultSubmitted(id, p, root, out, uint64(block.number + 1));
        vm.prank(p);
        market.submitResult(id, root, out);
        IComputeMarket.JobView memory v = market.getJob(id);
        assertEq(uint8(v.state), uint8(IComputeMarket.State.Committed));
        assertEq(v.root, root);
        assertEq(v.outputId, out);
        assertEq(v.seedBlock, block.number + 1);
    }

    function test_submitResult_rejections() public {
        uint256 id = _post();
        address p = providers[0];
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Posted));
        market.submitResult(id, keccak256("r"), 0);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 7));
        market.submitResult(7, keccak256("r"), 0);

        _accept(p, id);
        vm.prank(providers[1]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotJobProvider.selector, id, providers[1]));
        market.submitResult(id, keccak256("r"), 0);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.ZeroRoot.selector, id));
        market.submitResult(id, bytes32(0), keccak256("out"));

        uint256 deadline = block.number + RUN_BLOCKS;
        vm.roll(deadline + 1);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.DeadlinePassed.selector, id, deadline));
        market.submitResult(id, keccak256("r"), 0);

        vm.roll(deadline);
        _submit(p, id);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Committed));
        market.submitResult(id, keccak256("again"), 0);
    }

    // ---------------------------------------------------------------------------------------------
    // Verifier pool

    function test_enroll_andLeave_keepThePoolCompact() public {
        address a = providers[1];
        address b = providers[2];
        address c = providers[3];
        vm.expectEmit(address(market));
        emit IComputeMarket.VerifierEnrolled(a);
        vm.prank(a);
        market.enroll();
        _enroll(2, 4);
        assertEq(market.verifierCount(), 3);
        assertTrue(market.isVerifier(a) && market.isVerifier(b) && market.isVerifier(c));
        assertFalse(market.isVerifier(providers[4]));

        vm.expectEmit(address(market));
        emit IComputeMarket.VerifierLeft(a);
        vm.prank(a);
        market.leave();
        address[] memory pool = market.verifiers();
        assertEq(pool.length, 2);
        assertEq(pool[0], c); // the last member took the leaver's place
        assertEq(pool[1], b);
        assertFalse(market.isVerifier(a));

        // c's new position is tracked: it can leave, then b is alone.
        vm.prank(c);
        market.leave();
        pool = market.verifiers();
        assertEq(pool.length, 1);
        assertEq(pool[0], b);
        vm.prank(b);
        market.leave();
        assertEq(market.verifierCount(), 0);
        // Joining again works.
        vm.prank(a);
        market.enroll();
        assertEq(market.verifiers()[0], a);
    }

    function test_enroll_rejections() public {
        address a = providers[1];
        vm.prank(a);
        market.enroll();
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.AlreadyEnrolled.selector, a));
        market.enroll();

        address stranger = makeAddr("stranger");
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotEligible.selector, stranger));
        market.enroll();

        vm.prank(providers[2]);
        registry.requestUnbond(STAKE);
        vm.prank(providers[2]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotEligible.selector, providers[2]));
        market.enroll();

        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotVerifier.selector, stranger));
        market.leave();
    }

    function test_enroll_poolIsCappedAt256() public {
        vm.mockCall(address(registry), abi.encodeWithSelector(IProviderRegistry.canServe.selector), abi.encode(true));
        for (uint256 i; i < 256; ++i) {
            vm.prank(address(uint160(0x10000 + i)));
            market.enroll();
        }
        assertEq(market.verifierCount(), 256);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.PoolFull.selector, 256));
        market.enroll();
        // A place freed can be taken.
        vm.prank(address(uint160(0x10000 + 7)));
        market.leave();
        vm.prank(providers[0]);
        market.enroll();
    }

    function test_evict_removesOnlyMembersThatCannotServe() public {
        _enroll(1, 4);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.StillEligible.selector, providers[1]));
        market.evict(providers[1]);
        vm.prank(providers[1]);
        registry.requestUnbond(MIN_STAKE + 1);
        vm.expectEmit(address(market));
        emit IComputeMarket.VerifierLeft(providers[1]);
        market.evict(providers[1]);
        assertFalse(market.isVerifier(providers[1]));
        assertEq(market.verifierCount(), 2);
        address stranger = makeAddr("stranger");
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotVerifier.selector, stranger));
        market.evict(stranger);
    }

    // ---------------------------------------------------------------------------------------------
    // draw

    function test_draw_rejections() public {
        uint256 id = _post();
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Posted));
        market.draw(id);
        _accept(providers[0], id);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Accepted));
        market.draw(id);
        _submit(providers[0], id);
        uint256 seedBlock = block.number + 1;
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.SeedNotReady.selector, id, seedBlock));
        market.draw(id);
        vm.roll(seedBlock); // the seed block is being mined: its hash is not known yet
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.SeedNotReady.selector, id, seedBlock));
        market.draw(id);
        vm.roll(seedBlock + 1);
        market.draw(id);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Drawn));
        market.draw(id);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 9));
        market.draw(9);
    }

    function test_draw_seedsFromTheSeedBlockHash() public {
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        uint256 seedBlock = market.getJob(id).seedBlock;
        bytes32 hash = keccak256("the seed block");
        vm.roll(seedBlock + 10);
        vm.setBlockhash(seedBlock, hash);
        bytes32 seed = keccak256(abi.encode(hash, id));
        address[] memory expected = _referenceDraw(seed, market.verifiers(), providers[0], client, VERIFIERS);
        vm.expectEmit(address(market));
        emit IComputeMarket.VerifiersDrawn(id, seed, expected, uint64(block.number + VOTE_WINDOW));
        market.draw(id);
        IComputeMarket.JobView memory v = market.getJob(id);
        assertEq(uint8(v.state), uint8(IComputeMarket.State.Drawn));
        assertEq(v.seed, seed);
        assertEq(v.seedBlock, seedBlock);
        assertEq(v.voteDeadline, block.number + VOTE_WINDOW);
        assertEq(market.verifiersOf(id), expected);
        assertEq(expected.length, VERIFIERS);
    }

    /// The documented partial Fisher–Yates, reproduced over many seeds and pools with ineligible
    /// members, the provider and the client in them.
    function test_draw_followsTheDocumentedProcedure() public {
        _registerClient();
        vm.prank(client);
        market.enroll();
        _enroll(0, 10);
        vm.prank(providers[9]);
        registry.requestUnbond(MIN_STAKE + 1); // enrolled but no longer eligible
        for (uint256 k; k < 40; ++k) {
            address p = providers[k % 3];
            uint256 id = _committed(p);
            vm.roll(market.getJob(id).seedBlock + 1 + k % 5);
            bytes32 seed = keccak256(abi.encode(blockhash(market.getJob(id).seedBlock), id));
            address[] memory expected = _referenceDraw(seed, market.verifiers(), p, client, VERIFIERS);
            market.draw(id);
            assertEq(market.verifiersOf(id), expected, "draw order");
            assertEq(market.getJob(id).seed, seed);
            if (k % 7 == 3) {
                // Reorder the pool between draws: someone leaves and comes back at the end.
                vm.prank(providers[k % 9]);
                market.leave();
                vm.prank(providers[k % 9]);
                market.enroll();
            }
        }
    }

    function test_draw_distinctEligibleNeverProviderNorClient() public {
        _registerClient();
        vm.prank(client);
        market.enroll();
        _enroll(0, 8);
        vm.prank(providers[7]);
        registry.requestUnbond(MIN_STAKE + 1);
        uint256[10] memory times;
        uint256 rounds = 60;
        for (uint256 k; k < rounds; ++k) {
            address p = providers[k % 2];
            uint256 id = _committed(p);
            address[] memory drawn = _draw(id);
            // 9 members; minus provider, client and the unbonded one: 6 eligible, 3 seats.
            assertEq(drawn.length, VERIFIERS);
            for (uint256 i; i < drawn.length; ++i) {
                assertTrue(drawn[i] != p, "provider drawn");
                assertTrue(drawn[i] != client, "client drawn");
                assertTrue(drawn[i] != providers[7], "ineligible drawn");
                assertTrue(registry.canServe(drawn[i]));
                for (uint256 j; j < i; ++j) {
                    assertTrue(drawn[i] != drawn[j], "duplicate");
                }
                for (uint256 q; q < 8; ++q) {
                    if (drawn[i] == providers[q]) ++times[q];
                }
            }
        }
        // Everyone eligible gets drawn now and then (2..6 always eligible here).
        for (uint256 q = 2; q < 7; ++q) {
            assertGt(times[q], rounds / 10, "eligible member never drawn");
        }
    }

    function test_draw_fewerEligibleThanSeats() public {
        _enroll(0, 3); // providers 0, 1, 2; provider 0 runs the job
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        assertEq(drawn.length, 2);
        assertTrue(
            (drawn[0] == providers[1] && drawn[1] == providers[2])
                || (drawn[0] == providers[2] && drawn[1] == providers[1])
        );
        // Fees are cut in verifiersPerJob shares whoever sits: the empty seat's share is the provider's.
        _vote(drawn[0], id, true);
        _vote(drawn[1], id, true);
        market.settle(id);
        uint256 share = PAYMENT * FEE_BPS / 10_000 / VERIFIERS;
        assertEq(market.claimable(drawn[0]), share);
        assertEq(market.claimable(drawn[1]), share);
        assertEq(market.claimable(providers[0]), PAYMENT - 2 * share);
    }

    /// No eligible verifier: the job is drawn with nobody and settles at once, paying everything.
    function test_draw_withNoEligibleVerifierPaysAtOnce() public {
        _registerClient();
        vm.prank(client);
        market.enroll();
        vm.prank(providers[0]);
        market.enroll();
        uint256 id = _committed(providers[0]);
        vm.roll(market.getJob(id).seedBlock + 1);
        vm.expectEmit(address(market));
        emit IComputeMarket.VerifiersDrawn(
            id,
            keccak256(abi.encode(blockhash(block.number - 1), id)),
            new address[](0),
            uint64(block.number + VOTE_WINDOW)
        );
        market.draw(id);
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Drawn));
        assertEq(market.verifiersOf(id).length, 0);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobPaid(id, providers[0], PAYMENT, 0);
        market.settle(id); // same block: nothing to wait for
        assertEq(market.claimable(providers[0]), PAYMENT);
        _assertBooks();
    }

    function test_draw_afterTheSeedHashIsGoneIsDelayed() public {
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        uint256 seedBlock = market.getJob(id).seedBlock;
        vm.roll(seedBlock + 256); // still readable
        assertTrue(blockhash(seedBlock) != bytes32(0));
        vm.roll(seedBlock + 257); // gone
        assertEq(blockhash(seedBlock), bytes32(0));
        uint64 next = uint64(block.number + 1);
        vm.expectEmit(address(market));
        emit IComputeMarket.DrawDelayed(id, next);
        market.draw(id);
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Committed));
        assertEq(market.getJob(id).seedBlock, next);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.SeedNotReady.selector, id, next));
        market.draw(id);
        vm.roll(next + 1);
        bytes32 seed = keccak256(abi.encode(blockhash(next), id));
        market.draw(id);
        assertEq(market.getJob(id).seed, seed);
        assertEq(market.verifiersOf(id).length, VERIFIERS);
    }

    /// Worst case of the bounded draw: a full pool whose members all became ineligible.
    function test_draw_fullPoolOfIneligibleIsBounded() public {
        vm.mockCall(address(registry), abi.encodeWithSelector(IProviderRegistry.canServe.selector), abi.encode(true));
        for (uint256 i; i < 256; ++i) {
            vm.prank(address(uint160(0x10000 + i)));
            market.enroll();
        }
        vm.clearMockedCalls();
        uint256 id = _committed(providers[0]);
        vm.roll(market.getJob(id).seedBlock + 1);
        vm.cool(address(market));
        vm.cool(address(registry));
        uint256 before = gasleft();
        market.draw(id);
        uint256 used = before - gasleft();
        console2.log("draw, 256 ineligible pool members, gas", used);
        assertEq(market.verifiersOf(id).length, 0);
        assertLt(used, 3_000_000);
    }

    // ---------------------------------------------------------------------------------------------
    // tilesFor

    function test_tilesFor_matchesTheFormula() public {
        _enroll(1, 8);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        bytes32 seed = market.getJob(id).seed;
        for (uint256 i; i < drawn.length; ++i) {
            uint32[] memory tiles = market.tilesFor(id, drawn[i]);
            assertEq(tiles.length, TILES_PER_VERIFIER);
            for (uint256 j; j < tiles.length; ++j) {
                bytes memory pre = bytes.concat(seed, bytes32(i), bytes32(j)); // 96 bytes
                assertEq(tiles[j], uint256(keccak256(pre)) % TILES, "tile formula");
            }
        }
        // Still readable once settled.
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, true);
        }
        market.settle(id);
        assertEq(market.tilesFor(id, drawn[0]).length, TILES_PER_VERIFIER);
    }

    function testFuzz_tilesFor_inRangeAndReproducible(uint32 tiles, uint256 salt) public {
        tiles = uint32(bound(tiles, 1, 65_536));
        _enroll(1, 5);
        IComputeMarket.JobParams memory p = _jobParams();
        p.tiles = tiles;
        vm.prank(client);
        uint256 id = market.postJob(p, spec);
        _accept(providers[0], id);
        _submit(providers[0], id);
        uint256 seedBlock = market.getJob(id).seedBlock;
        vm.roll(seedBlock + 1);
        vm.setBlockhash(seedBlock, keccak256(abi.encode(salt)));
        market.draw(id);
        address[] memory drawn = market.verifiersOf(id);
        bytes32 seed = keccak256(abi.encode(keccak256(abi.encode(salt)), id));
        for (uint256 i; i < drawn.length; ++i) {
            uint32[] memory got = market.tilesFor(id, drawn[i]);
            for (uint256 j; j < got.length; ++j) {
                assertLt(got[j], tiles);
                assertEq(got[j], uint256(keccak256(abi.encode(seed, i, j))) % tiles);
            }
        }
    }

    function test_tilesFor_rejections() public {
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Committed));
        market.tilesFor(id, providers[1]);
        address[] memory drawn = _draw(id);
        address outsider = _notIn(drawn);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotDrawnVerifier.selector, id, outsider));
        market.tilesFor(id, outsider);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotDrawnVerifier.selector, id, providers[0]));
        market.tilesFor(id, providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 5));
        market.tilesFor(5, drawn[0]);
        // A failed check re-posts the job: the old draw is gone.
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, false);
        }
        market.settle(id);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Posted));
        market.tilesFor(id, drawn[0]);
    }

    // ---------------------------------------------------------------------------------------------
    // vote

    function test_vote_recordsOnce() public {
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        assertFalse(market.hasVoted(id, drawn[1]));
        vm.expectEmit(address(market));
        emit IComputeMarket.Voted(id, drawn[1], false);
        _vote(drawn[1], id, false);
        assertTrue(market.hasVoted(id, drawn[1]));
        assertFalse(market.hasVoted(id, drawn[0]));
        assertFalse(market.hasVoted(id, drawn[2]));
        assertFalse(market.hasVoted(id, providers[0]));
        _vote(drawn[2], id, true);
        IComputeMarket.JobView memory v = market.getJob(id);
        assertEq(v.matches, 1);
        assertEq(v.mismatches, 1);
        vm.prank(drawn[1]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.AlreadyVoted.selector, id, drawn[1]));
        market.vote(id, true);
    }

    function test_vote_rejections() public {
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        vm.prank(providers[1]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Committed));
        market.vote(id, true);
        address[] memory drawn = _draw(id);
        address outsider = _notIn(drawn);
        vm.prank(outsider);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotDrawnVerifier.selector, id, outsider));
        market.vote(id, true);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotDrawnVerifier.selector, id, providers[0]));
        market.vote(id, true);

        uint256 voteDeadline = block.number + VOTE_WINDOW;
        vm.roll(voteDeadline); // the last block of the window
        _vote(drawn[0], id, true);
        _vote(drawn[2], id, true);
        vm.roll(voteDeadline + 1);
        vm.prank(drawn[1]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.VoteWindowClosed.selector, id, voteDeadline));
        market.vote(id, true);
        market.settle(id);
        vm.prank(drawn[1]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Done));
        market.vote(id, true);
    }

    /// A drawn verifier that left the pool (or became ineligible) still votes on its draw.
    function test_vote_byAVerifierThatLeft() public {
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        vm.prank(drawn[0]);
        market.leave();
        _vote(drawn[0], id, true);
        assertTrue(market.hasVoted(id, drawn[0]));
    }

    // ---------------------------------------------------------------------------------------------
    // settle

    /// post → accept → submit → mine → draw → votes → settle → everyone claims, to the wei.
    function test_happyPath_exactBalances() public {
        _enroll(0, 8); // the provider is enrolled too, and never drawn for its own job
        address p = providers[0];
        uint256 clientBefore = token.balanceOf(client);
        uint256 id = _committed(p);
        address[] memory drawn = _draw(id);
        assertEq(drawn.length, 3);
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, true);
        }
        uint256 share = PAYMENT * FEE_BPS / 10_000 / VERIFIERS; // 3.333... BIG
        assertEq(share, 3_333_333_333_333_333_333);
        uint256 paid = PAYMENT - 3 * share;
        vm.expectEmit(address(market));
        emit IComputeMarket.JobPaid(id, p, paid, 3 * share);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.CommitmentsChanged(p, address(market), 0);
        market.settle(id); // all voted: no need to wait for the window

        IComputeMarket.JobView memory v = market.getJob(id);
        assertEq(uint8(v.state), uint8(IComputeMarket.State.Done));
        assertEq(v.escrow, 0);
        assertEq(v.payment, PAYMENT);
        assertEq(v.matches, 3);
        assertEq(registry.commitmentsOf(p), 0);
        assertEq(market.claimable(p), paid);
        _assertBooks();

        uint256 before = token.balanceOf(p);
        vm.expectEmit(address(market));
        emit IRewardLedger.RewardsClaimed(p, paid);
        vm.prank(p);
        assertEq(market.claimRewards(), paid);
        assertEq(token.balanceOf(p), before + paid);
        for (uint256 i; i < drawn.length; ++i) {
            before = token.balanceOf(drawn[i]);
            vm.prank(drawn[i]);
            market.claimRewards();
            assertEq(token.balanceOf(drawn[i]), before + share);
            assertEq(market.earned(drawn[i]), share);
        }
        assertEq(token.balanceOf(address(market)), 0);
        assertEq(token.balanceOf(client), clientBefore - PAYMENT);
        assertEq(registry.stakeOf(p), STAKE);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Done));
        market.settle(id);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Done));
        market.cancel(id);
    }

    function test_settle_waitsForVotesOrTheWindow() public {
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Committed));
        market.settle(id);
        address[] memory drawn = _draw(id);
        uint256 voteDeadline = block.number + VOTE_WINDOW;
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.VotingOpen.selector, id, voteDeadline));
        market.settle(id);
        _vote(drawn[0], id, true);
        _vote(drawn[1], id, true);
        vm.roll(voteDeadline);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.VotingOpen.selector, id, voteDeadline));
        market.settle(id);
        vm.roll(voteDeadline + 1);
        market.settle(id);
        // Two voters paid, the silent one's share went to the provider.
        uint256 share = _share(PAYMENT);
        assertEq(market.claimable(drawn[0]), share);
        assertEq(market.claimable(drawn[1]), share);
        assertEq(market.claimable(drawn[2]), 0);
        assertEq(market.claimable(providers[0]), PAYMENT - 2 * share);
        _assertBooks();
    }

    /// Nobody votes: each silent round is drawn again from fresh verifiers (the silent ones leave
    /// the pool); silence in the last round pays the provider everything.
    function test_settle_silenceIsDrawnAgainThenPays() public {
        _enroll(1, 10); // 9 members
        uint256 id = _committed(providers[0]);
        for (uint256 round; round < market.MAX_ROUNDS(); ++round) {
            address[] memory drawn = _draw(id);
            assertEq(drawn.length, 3);
            assertEq(market.getJob(id).round, round);
            vm.roll(block.number + VOTE_WINDOW + 1);
            if (round + 1 < market.MAX_ROUNDS()) {
                vm.expectEmit(address(market));
                emit IComputeMarket.CheckInconclusive(id, uint32(round + 1), 0, 0, 0, uint64(block.number + 1));
                market.settle(id);
                IComputeMarket.JobView memory v = market.getJob(id);
                assertEq(uint8(v.state), uint8(IComputeMarket.State.Committed));
                assertEq(v.round, round + 1);
                assertEq(v.seedBlock, block.number + 1);
                assertEq(v.seed, bytes32(0));
                assertEq(v.voteDeadline, 0);
                assertEq(v.escrow, PAYMENT);
                assertEq(market.verifiersOf(id).length, 0);
                for (uint256 i; i < drawn.length; ++i) {
                    assertFalse(market.isVerifier(drawn[i]), "a silent verifier stays in the pool");
                }
                assertEq(market.verifierCount(), 9 - 3 * (round + 1));
                vm.expectRevert(
                    abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Committed)
                );
                market.tilesFor(id, drawn[0]);
            } else {
                vm.expectEmit(address(market));
                emit IComputeMarket.JobPaid(id, providers[0], PAYMENT, 0);
                market.settle(id);
            }
        }
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Done));
        assertEq(market.claimable(providers[0]), PAYMENT);
        assertEq(registry.commitmentsOf(providers[0]), 0);
        _assertBooks();
    }

    /// A tie (one mismatch, one match, one silent seat) decides nothing: the voters are paid,
    /// the silent one leaves the pool, and fresh verifiers decide.
    function test_settle_tieIsDrawnAgain() public {
        _enroll(1, 10);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        _vote(drawn[0], id, false);
        _vote(drawn[1], id, true);
        vm.roll(block.number + VOTE_WINDOW + 1);
        uint256 share = _share(PAYMENT);
        vm.expectEmit(address(market));
        emit IComputeMarket.CheckInconclusive(id, 1, 1, 1, 2 * share, uint64(block.number + 1));
        market.settle(id);
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Committed));
        assertEq(market.getJob(id).escrow, PAYMENT - 2 * share);
        assertTrue(market.isVerifier(drawn[0]) && market.isVerifier(drawn[1]), "voters stay");
        assertFalse(market.isVerifier(drawn[2]), "the silent one leaves");
        assertEq(market.claimable(drawn[0]), share);
        assertEq(market.claimable(drawn[1]), share);

        address[] memory again = _draw(id);
        assertEq(again.length, 3);
        for (uint256 i; i < again.length; ++i) {
            assertTrue(again[i] != drawn[2]);
            _vote(again[i], id, true);
        }
        uint256 escrow = PAYMENT - 2 * share;
        uint256 share2 = _share(escrow);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobPaid(id, providers[0], escrow - 3 * share2, 3 * share2);
        market.settle(id);
        assertEq(registry.stakeOf(providers[0]), STAKE);
        _assertBooks();
    }

    /// A verifier that was drawn, stayed silent and left the pool meanwhile is skipped when the
    /// silent ones are removed.
    function test_settle_inconclusiveSkipsASilentVerifierThatLeft() public {
        _enroll(1, 10);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        vm.prank(drawn[1]);
        market.leave();
        _vote(drawn[0], id, true);
        _settleAfterTheWindow(id);
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Committed));
        assertEq(market.verifierCount(), 7);
        assertTrue(market.isVerifier(drawn[0]));
        assertFalse(market.isVerifier(drawn[2]));
    }

    /// One mismatch against two matches passes.
    function test_settle_minorityMismatchPasses() public {
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        _vote(drawn[0], id, true);
        _vote(drawn[1], id, false);
        _vote(drawn[2], id, true);
        market.settle(id);
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Done));
        assertEq(market.claimable(drawn[1]), _share(PAYMENT)); // voted, so paid, whichever way
    }

    /// A failed check slashes the provider (refilling the escrow with the fees the check cost,
    /// burning the rest), bars it and re-posts the job, which another provider takes and passes.
    function test_failedCheck_slashesBarsAndReposts() public {
        _enroll(0, 8);
        address bad = providers[0];
        uint256 clientBefore = token.balanceOf(client);
        uint256 id = _committed(bad);
        address[] memory drawn = _draw(id);
        _vote(drawn[0], id, false);
        _vote(drawn[1], id, false);
        _vote(drawn[2], id, true);
        uint256 share = _share(PAYMENT);
        uint256 slash = STAKE * SLASH_BPS / 10_000;

        vm.expectEmit(address(registry));
        emit IProviderRegistry.Slashed(bad, address(market), slash, address(market));
        vm.expectEmit(address(market));
        emit IComputeMarket.JobFailed(id, bad, slash, 3 * share, 2, 1);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobReposted(id, 1);
        market.settle(id);

        IComputeMarket.JobView memory v = market.getJob(id);
        assertEq(uint8(v.state), uint8(IComputeMarket.State.Posted));
        assertEq(v.provider, address(0));
        assertEq(v.deadline, 0);
        assertEq(v.root, bytes32(0));
        assertEq(v.outputId, bytes32(0));
        assertEq(v.seed, bytes32(0));
        assertEq(v.seedBlock, 0);
        assertEq(v.voteDeadline, 0);
        assertEq(v.matches, 0);
        assertEq(v.mismatches, 0);
        assertEq(v.attempt, 1);
        assertEq(v.specHash, keccak256(spec));
        assertEq(v.tiles, TILES);
        assertEq(v.runBlocks, RUN_BLOCKS);
        assertEq(v.payment, PAYMENT);
        assertEq(v.escrow, PAYMENT); // the three fees refilled from the slash
        assertEq(v.round, 0);
        assertEq(market.verifiersOf(id).length, 0);
        assertFalse(market.hasVoted(id, drawn[0]));
        assertTrue(market.barred(id, bad));
        assertFalse(market.barred(id, providers[1]));
        assertEq(registry.stakeOf(bad), STAKE - slash);
        assertEq(registry.commitmentsOf(bad), 0);
        assertEq(token.balanceOf(client), clientBefore - PAYMENT); // no profit from a failed check
        assertEq(token.balanceOf(market.BURN()), slash - 3 * share);
        assertEq(market.claimable(bad), 0);
        for (uint256 i; i < 3; ++i) {
            assertEq(market.claimable(drawn[i]), share);
        }
        _assertBooks();

        // The bad provider may not take it again; others (and it, for other jobs) may.
        vm.prank(bad);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.ProviderBarred.selector, id, bad));
        market.accept(id);
        _accept(bad, _post());

        address good = providers[1];
        uint256 goodBefore = market.claimable(good); // it may have verified the first round
        _accept(good, id);
        _submit(good, id);
        address[] memory drawn2 = _draw(id);
        assertEq(drawn2.length, 3);
        for (uint256 i; i < drawn2.length; ++i) {
            assertTrue(drawn2[i] != good);
            _vote(drawn2[i], id, true);
        }
        uint256 escrow2 = PAYMENT;
        uint256 share2 = _share(escrow2);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobPaid(id, good, escrow2 - 3 * share2, 3 * share2);
        market.settle(id);
        assertEq(market.claimable(good), goodBefore + escrow2 - 3 * share2);
        assertEq(market.getJob(id).attempt, 1);
        assertEq(market.getJob(id).escrow, 0);
        // The client's payment and the refill went to the two rounds of verifiers and the good
        // provider.
        uint256 credited = market.claimable(good);
        for (uint256 i; i < 8; ++i) {
            if (providers[i] != good) credited += market.claimable(providers[i]);
        }
        assertEq(credited, PAYMENT + 3 * share);
        _assertBooks();
    }

    /// A single mismatch vote with the other verifiers silent does not fail an honest result:
    /// the check is drawn again and the fresh verifiers' match votes pass it.
    function test_settle_loneMismatchAgainstSilenceIsDrawnAgain() public {
        _enroll(1, 10);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        _vote(drawn[2], id, false);
        _settleAfterTheWindow(id);
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Committed));
        assertEq(registry.stakeOf(providers[0]), STAKE);
        address[] memory again = _draw(id);
        _vote(again[0], id, true);
        _vote(again[1], id, true);
        _settleAfterTheWindow(id);
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Done));
        assertEq(registry.stakeOf(providers[0]), STAKE);
        _assertBooks();
    }

    /// In the last round no majority is needed: mismatch votes outnumbering match votes fail the
    /// result (a lazy provider whose verifiers keep dropping out is still caught), a tie passes.
    function test_settle_lastRoundFallsBackToMoreVotes() public {
        _enroll(1, 10);
        uint256 id = _committed(providers[0]);
        for (uint256 round; round + 1 < market.MAX_ROUNDS(); ++round) {
            address[] memory d = _draw(id);
            _vote(d[0], id, false);
            _settleAfterTheWindow(id);
            assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Committed));
        }
        address[] memory last = _draw(id);
        assertEq(market.getJob(id).round, market.MAX_ROUNDS() - 1);
        _vote(last[0], id, false);
        _settleAfterTheWindow(id);
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Posted));
        assertTrue(market.barred(id, providers[0]));
        assertEq(market.getJob(id).round, 0);
        assertEq(market.getJob(id).escrow, PAYMENT); // three fees, refilled from the slash

        // Next attempt: every round ties (one each way, one silent seat); in the last a tie
        // passes.
        address next = providers[1];
        _accept(next, id);
        _submit(next, id);
        for (uint256 round; round + 1 < market.MAX_ROUNDS(); ++round) {
            address[] memory d = _draw(id);
            _vote(d[0], id, false);
            _vote(d[1], id, true);
            _settleAfterTheWindow(id);
            assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Committed));
        }
        last = _draw(id);
        _vote(last[0], id, false);
        _vote(last[1], id, true);
        _settleAfterTheWindow(id);
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Done));
        _assertBooks();
    }

    /// A de-authorised market slashes nothing but still re-posts and bars.
    function test_failedCheck_deauthorisedMarketDoesNotSlash() public {
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, false);
        }
        registry.setMarket(address(market), false);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobFailed(id, providers[0], 0, 0, 3, 0);
        market.settle(id);
        assertEq(registry.stakeOf(providers[0]), STAKE);
        assertEq(registry.commitmentsOf(providers[0]), 0);
        assertTrue(market.barred(id, providers[0]));
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Posted));
    }

    /// Slashing reaches unbonding stake too (slashable = bonded + unbonding).
    function test_failedCheck_slashesUnbondingStake() public {
        vm.prank(providers[0]);
        registry.addStake(3_000 ether);
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        vm.prank(providers[0]);
        registry.requestUnbond(2_000 ether); // 3,000 bonded + 2,000 unbonding
        address[] memory drawn = _draw(id);
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, false);
        }
        uint256 slash = 5_000 ether * uint256(SLASH_BPS) / 10_000;
        uint256 fees = 3 * _share(PAYMENT);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobFailed(id, providers[0], slash, fees, 3, 0);
        market.settle(id);
        assertEq(registry.slashableOf(providers[0]), 5_000 ether - slash);
        assertEq(token.balanceOf(market.BURN()), slash - fees);
    }

    /// A slash smaller than the fees refills what it can and burns nothing.
    function test_failedCheck_smallSlashRefillsPartly() public {
        market = _deploy(_config(VERIFIERS, 5_000, 1)); // fees 50 %, slash 0.01 %
        _enroll(1, 6);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, false);
        }
        uint256 slash = STAKE / 10_000;
        uint256 fees = 3 * _share(PAYMENT);
        assertLt(slash, fees);
        market.settle(id);
        assertEq(market.getJob(id).escrow, PAYMENT - fees + slash);
        assertEq(token.balanceOf(market.BURN()), 0);
        _assertBooks();
    }

    // ---------------------------------------------------------------------------------------------
    // expire

    function test_expire_slashesBarsAndReposts() public {
        uint256 id = _post();
        address late = providers[0];
        _accept(late, id);
        uint256 deadline = block.number + RUN_BLOCKS;
        vm.roll(deadline);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.DeadlineNotPassed.selector, id, deadline));
        market.expire(id);
        vm.roll(deadline + 1);
        uint256 slash = STAKE * SLASH_BPS / 10_000;
        uint256 clientBefore = token.balanceOf(client);
        vm.expectEmit(address(registry));
        emit IProviderRegistry.Slashed(late, address(market), slash, client);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobMissed(id, late, slash);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobReposted(id, 1);
        vm.prank(makeAddr("watcher"));
        market.expire(id);

        IComputeMarket.JobView memory v = market.getJob(id);
        assertEq(uint8(v.state), uint8(IComputeMarket.State.Posted));
        assertEq(v.provider, address(0));
        assertEq(v.deadline, 0);
        assertEq(v.attempt, 1);
        assertEq(v.escrow, PAYMENT);
        assertTrue(market.barred(id, late));
        assertEq(registry.commitmentsOf(late), 0);
        assertEq(token.balanceOf(client), clientBefore + slash);
        assertEq(registry.stakeOf(late), STAKE - slash);
        vm.prank(late);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.ProviderBarred.selector, id, late));
        market.accept(id);

        // Someone else takes it, misses too: attempt 2, both barred.
        _accept(providers[1], id);
        assertEq(market.getJob(id).deadline, block.number + RUN_BLOCKS);
        vm.roll(block.number + RUN_BLOCKS + 1);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobReposted(id, 2);
        market.expire(id);
        assertTrue(market.barred(id, providers[1]));
        _assertBooks();
    }

    function test_expire_rejections() public {
        uint256 id = _post();
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Posted));
        market.expire(id);
        _accept(providers[0], id);
        _submit(providers[0], id);
        vm.roll(block.number + RUN_BLOCKS + 1);
        // A result in time cannot be expired, however long the check takes.
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Committed));
        market.expire(id);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 3));
        market.expire(3);
    }

    // ---------------------------------------------------------------------------------------------
    // cancel

    function test_cancel_refundsTheEscrow() public {
        uint256 before = token.balanceOf(client);
        uint256 id = _post();
        vm.expectEmit(address(market));
        emit IComputeMarket.JobCancelled(id, PAYMENT);
        vm.prank(client);
        market.cancel(id);
        assertEq(token.balanceOf(client), before);
        assertEq(token.balanceOf(address(market)), 0);
        IComputeMarket.JobView memory v = market.getJob(id);
        assertEq(uint8(v.state), uint8(IComputeMarket.State.Cancelled));
        assertEq(v.escrow, 0);
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Cancelled));
        market.accept(id);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Cancelled));
        market.cancel(id);
    }

    function test_cancel_rejections() public {
        uint256 id = _post();
        vm.prank(providers[0]);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.NotJobClient.selector, id, providers[0]));
        market.cancel(id);
        _accept(providers[0], id);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.WrongState.selector, id, IComputeMarket.State.Accepted));
        market.cancel(id);
        vm.prank(client);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 4));
        market.cancel(4);
    }

    /// After a failed check the client may give up: it gets the escrow back, refilled from the
    /// slash with the fees the failed round cost, so it ends where it started, no better.
    function test_cancel_afterAFailedCheck() public {
        _enroll(1, 6);
        uint256 before = token.balanceOf(client);
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, false);
        }
        market.settle(id);
        vm.expectEmit(address(market));
        emit IComputeMarket.JobCancelled(id, PAYMENT);
        vm.prank(client);
        market.cancel(id);
        assertEq(token.balanceOf(client), before);
        _assertBooks();
    }

    // ---------------------------------------------------------------------------------------------
    // Views

    function test_views_ofUnknownJobsRevert() public {
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 1));
        market.getJob(1);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 1));
        market.inputsOf(1);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 1));
        market.verifiersOf(1);
        vm.expectRevert(abi.encodeWithSelector(IComputeMarket.UnknownJob.selector, 1));
        market.hasVoted(1, providers[0]);
        assertFalse(market.barred(1, providers[0]));
    }

    function test_constants() public view {
        assertEq(market.KIND_RENDER(), 0);
        assertEq(market.KIND_INFER(), 1);
        assertEq(market.MAX_POOL(), 256);
        assertEq(market.MAX_TILES(), 65_536);
        assertEq(market.MAX_SPEC_BYTES(), 16_384);
        assertEq(market.MAX_INPUTS(), 8);
        assertEq(market.MAX_RUN_BLOCKS(), 1_000_000);
        assertEq(market.MAX_ROUNDS(), 3);
        assertEq(market.BURN(), 0x000000000000000000000000000000000000dEaD);
    }

    // ---------------------------------------------------------------------------------------------
    // Helpers

    function _registerClient() internal {
        vm.startPrank(client);
        token.approve(address(registry), type(uint256).max);
        registry.register(hex"00240801", STAKE);
        vm.stopPrank();
    }

    function _notIn(address[] memory drawn) internal view returns (address) {
        for (uint256 q = 1; q < providers.length; ++q) {
            bool inside;
            for (uint256 i; i < drawn.length; ++i) {
                if (drawn[i] == providers[q]) inside = true;
            }
            if (!inside) return providers[q];
        }
        revert("everyone drawn");
    }

    /// The selection procedure of the NatSpec, over a full copy of the pool.
    function _referenceDraw(bytes32 seed, address[] memory pool, address provider, address client_, uint256 want)
        internal
        view
        returns (address[] memory out)
    {
        uint256 n = pool.length;
        out = new address[](want);
        uint256 count;
        for (uint256 i; i < n && count < want; ++i) {
            uint256 j = i + uint256(keccak256(abi.encode(seed, i))) % (n - i);
            (pool[i], pool[j]) = (pool[j], pool[i]);
            address a = pool[i];
            if (a != provider && a != client_ && registry.canServe(a)) out[count++] = a;
        }
        assembly {
            mstore(out, count)
        }
    }
}

/// Exact accounting over random payments, fee and slash rates, committee sizes and votes.
contract ComputeMarketFuzzTest is ComputeBase {
    struct Case {
        uint256 id;
        address provider;
        uint256 payment;
        uint256 share;
        uint256 matches;
        uint256 mismatches;
        uint256 clientBefore;
        uint256 slashable;
        uint256 slashBps;
        uint256 burnBefore;
        uint256 drawn;
    }

    /// One check of a fuzzed market: the outcome follows the majority rule of round 0, every wei
    /// of the payment (and of the refill from a slash) ends with the provider, the verifiers or
    /// the escrow, and the client never gains from a failed check.
    function testFuzz_settle_exactAccounting(
        uint256 payment,
        uint16 feeBps,
        uint16 slashBps,
        uint8 verifiers,
        uint256 votes
    ) public {
        Case memory c;
        c.payment = bound(payment, 1, 1_000_000 ether);
        feeBps = uint16(bound(feeBps, 0, 5_000));
        c.slashBps = bound(slashBps, 0, 10_000);
        verifiers = uint8(bound(verifiers, 1, 9));
        market = _deploy(_config(verifiers, feeBps, uint16(c.slashBps)));
        _enroll(0, 10);
        c.share = c.payment * feeBps / 10_000 / verifiers;

        IComputeMarket.JobParams memory jp = _jobParams();
        jp.payment = c.payment;
        vm.prank(client);
        c.id = market.postJob(jp, spec);
        c.provider = providers[votes % 10];
        _accept(c.provider, c.id);
        _submit(c.provider, c.id);
        address[] memory drawn = _draw(c.id);
        assertEq(drawn.length, verifiers); // 9 eligible besides the provider

        // Two bits per verifier: 0 silent, 1 mismatch, 2 or 3 match.
        for (uint256 i; i < drawn.length; ++i) {
            uint256 bits = (votes >> (8 + 2 * i)) & 3;
            if (bits == 0) continue;
            _vote(drawn[i], c.id, bits != 1);
            if (bits == 1) ++c.mismatches;
            else ++c.matches;
        }
        vm.roll(block.number + VOTE_WINDOW + 1);
        c.clientBefore = token.balanceOf(client);
        c.slashable = registry.slashableOf(c.provider);
        c.burnBefore = token.balanceOf(market.BURN());
        c.drawn = drawn.length;
        market.settle(c.id);

        uint256 fees = c.share * (c.matches + c.mismatches);
        assertLe(fees, c.payment * feeBps / 10_000);
        uint256 verifierSum;
        for (uint256 i; i < drawn.length; ++i) {
            uint256 expected = (votes >> (8 + 2 * i)) & 3 == 0 ? 0 : c.share;
            assertEq(market.claimable(drawn[i]), expected, "verifier fee");
            verifierSum += market.claimable(drawn[i]);
        }
        assertEq(verifierSum, fees);
        uint256 refill = _checkOutcome(c, fees, verifierSum);
        if (refill == type(uint256).max) {
            // Inconclusive: the silent verifiers left the pool, the voters stayed.
            for (uint256 i; i < drawn.length; ++i) {
                assertEq(market.isVerifier(drawn[i]), (votes >> (8 + 2 * i)) & 3 != 0, "pool after a re-draw");
            }
        }
    }

    /// Checks the settled job against the rule; returns the refill of a failure, 0 for a pass,
    /// `type(uint256).max` for an inconclusive check.
    function _checkOutcome(Case memory c, uint256 fees, uint256 verifierSum) internal view returns (uint256 refill) {
        IComputeMarket.JobView memory v = market.getJob(c.id);
        uint256 half = c.drawn / 2;
        assertEq(token.balanceOf(client), c.clientBefore, "the client's balance moves only by its cancel");
        if (c.mismatches > half) {
            uint256 slash = c.slashable * c.slashBps / 10_000;
            refill = slash < fees ? slash : fees;
            assertEq(uint8(v.state), uint8(IComputeMarket.State.Posted));
            assertEq(v.escrow, c.payment - fees + refill);
            assertGt(v.escrow, 0);
            assertEq(market.claimable(c.provider), 0);
            assertEq(token.balanceOf(market.BURN()), c.burnBefore + slash - refill);
            assertEq(registry.slashableOf(c.provider), c.slashable - slash);
            assertTrue(market.barred(c.id, c.provider));
        } else if (c.matches <= half) {
            assertEq(uint8(v.state), uint8(IComputeMarket.State.Committed));
            assertEq(v.round, 1);
            assertEq(v.escrow, c.payment - fees);
            assertEq(market.claimable(c.provider), 0);
            assertEq(registry.slashableOf(c.provider), c.slashable);
            assertFalse(market.barred(c.id, c.provider));
            assertEq(market.claimable(c.provider) + verifierSum + v.escrow, c.payment, "payment split");
            _assertBooks();
            _assertSupply();
            return type(uint256).max;
        } else {
            assertEq(uint8(v.state), uint8(IComputeMarket.State.Done));
            assertEq(v.escrow, 0);
            assertEq(market.claimable(c.provider), c.payment - fees);
            assertEq(registry.slashableOf(c.provider), c.slashable);
            assertFalse(market.barred(c.id, c.provider));
        }
        assertEq(market.claimable(c.provider) + verifierSum + v.escrow, c.payment + refill, "payment split");
        _assertBooks();
        _assertSupply();
    }

    /// Several failed attempts then a pass (or a cancel): the escrow loses the fees paid, is
    /// refilled from each slash up to the payment, never runs dry, and every wei of the payment
    /// and of the refills is accounted for; the rest of the slashes is burned.
    function testFuzz_repeatedFailures_neverOverdraw(uint256 payment, uint16 feeBps, uint8 rounds, bool giveUp) public {
        payment = bound(payment, 1, 1_000_000 ether);
        feeBps = uint16(bound(feeBps, 0, 5_000));
        rounds = uint8(bound(rounds, 1, 6));
        market = _deploy(_config(3, feeBps, SLASH_BPS));
        _enroll(0, 10);
        uint256 clientBefore = token.balanceOf(client);
        IComputeMarket.JobParams memory jp = _jobParams();
        jp.payment = payment;
        vm.prank(client);
        uint256 id = market.postJob(jp, spec);

        uint256 escrow = payment;
        uint256 refilled;
        uint256 burned;
        for (uint256 r; r < rounds; ++r) {
            address p = providers[r];
            _accept(p, id);
            _submit(p, id);
            address[] memory drawn = _draw(id);
            for (uint256 i; i < drawn.length; ++i) {
                _vote(drawn[i], id, false);
            }
            uint256 slash = registry.slashableOf(p) * SLASH_BPS / 10_000;
            market.settle(id);
            escrow -= 3 * (escrow * feeBps / 10_000 / 3);
            uint256 refill = slash < payment - escrow ? slash : payment - escrow;
            escrow += refill;
            refilled += refill;
            burned += slash - refill;
            assertEq(market.getJob(id).escrow, escrow);
            assertGt(escrow, 0);
            assertEq(market.getJob(id).attempt, r + 1);
            _assertBooks();
        }
        uint256 provPay;
        if (giveUp) {
            vm.prank(client);
            market.cancel(id);
        } else {
            address p = providers[rounds];
            uint256 earlier = market.claimable(p); // fees from verifying earlier rounds
            _accept(p, id);
            _submit(p, id);
            address[] memory drawn = _draw(id);
            for (uint256 i; i < drawn.length; ++i) {
                _vote(drawn[i], id, true);
            }
            market.settle(id);
            provPay = escrow - 3 * (escrow * feeBps / 10_000 / 3);
            assertEq(market.claimable(p), earlier + provPay);
        }
        uint256 credited;
        for (uint256 i; i < providers.length; ++i) {
            credited += market.claimable(providers[i]);
        }
        uint256 refund = giveUp ? escrow : 0;
        assertEq(credited + refund, payment + refilled, "payment split");
        assertEq(token.balanceOf(client), clientBefore - payment + refund);
        assertEq(token.balanceOf(market.BURN()), burned);
        _assertBooks();
        _assertSupply();
        // Everyone claims: the market is empty.
        for (uint256 i; i < providers.length; ++i) {
            if (market.claimable(providers[i]) == 0) continue;
            vm.prank(providers[i]);
            market.claimRewards();
        }
        assertEq(token.balanceOf(address(market)), 0);
    }

    function _assertSupply() internal view {
        uint256 sum = token.balanceOf(address(this)) + token.balanceOf(address(market))
            + token.balanceOf(address(registry)) + token.balanceOf(client) + token.balanceOf(market.BURN());
        for (uint256 i; i < providers.length; ++i) {
            sum += token.balanceOf(providers[i]);
        }
        // Markets deployed by earlier steps of a test hold nothing (only `market` is used).
        assertEq(sum, SUPPLY, "BIG created or lost");
    }
}

/// Gas of each step of a job, in the steady state (the accounts' reward words already nonzero),
/// with a 2 KiB spec (the Cornell example scene wrapped in a v1 job spec is about that size), three
/// verifiers and cold storage as in a fresh transaction. Logs execution gas and the transaction
/// gas with its calldata (EIP-7623 floor included), as `Gas.t.sol` does for proofs.
contract ComputeMarketGasTest is ComputeBase {
    function setUp() public override {
        super.setUp();
        spec = _cornellSizedSpec();
        _enroll(1, 10);
        // One job end to end first, so rewards words are warm-nonzero as in steady state.
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, true);
        }
        market.settle(id);
        // A second one so every verifier has earned once.
        id = _committed(providers[0]);
        drawn = _draw(id);
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, true);
        }
        market.settle(id);
    }

    function test_gas_jobLifecycle() public {
        address p = providers[0];
        IComputeMarket.JobParams memory jp = _jobParams();
        assertEq(spec.length, 2048);

        _cool();
        vm.prank(client);
        uint256 before = gasleft();
        uint256 id = market.postJob(jp, spec);
        _log("postJob (2 KiB spec)", before - gasleft(), abi.encodeCall(market.postJob, (jp, spec)));

        _cool();
        vm.prank(p);
        before = gasleft();
        market.accept(id);
        _log("accept", before - gasleft(), abi.encodeCall(market.accept, (id)));

        bytes32 root = keccak256("root");
        bytes32 out = keccak256("out");
        vm.roll(block.number + 1);
        _cool();
        vm.prank(p);
        before = gasleft();
        market.submitResult(id, root, out);
        _log("submitResult", before - gasleft(), abi.encodeCall(market.submitResult, (id, root, out)));

        vm.roll(block.number + 2);
        _cool();
        before = gasleft();
        market.draw(id);
        _log("draw (3 of 9 verifiers)", before - gasleft(), abi.encodeCall(market.draw, (id)));

        address[] memory drawn = market.verifiersOf(id);
        assertEq(drawn.length, 3);
        for (uint256 i; i < drawn.length; ++i) {
            vm.roll(block.number + 1);
            _cool();
            vm.prank(drawn[i]);
            before = gasleft();
            market.vote(id, true);
            _log(
                string.concat("vote (position ", vm.toString(i), ")"),
                before - gasleft(),
                abi.encodeCall(market.vote, (id, true))
            );
        }

        vm.roll(block.number + 1);
        _cool();
        before = gasleft();
        market.settle(id);
        _log("settle (pass, 3 votes)", before - gasleft(), abi.encodeCall(market.settle, (id)));
        assertEq(uint8(_state(id)), uint8(IComputeMarket.State.Done));
    }

    function test_gas_failAndExpire() public {
        uint256 id = _committed(providers[0]);
        address[] memory drawn = _draw(id);
        for (uint256 i; i < drawn.length; ++i) {
            _vote(drawn[i], id, false);
        }
        _cool();
        uint256 before = gasleft();
        market.settle(id);
        _log("settle (fail, 3 votes, slash)", before - gasleft(), abi.encodeCall(market.settle, (id)));

        // An inconclusive check: one vote each way, one silent verifier leaves the pool.
        uint256 other = _committed(providers[2]);
        drawn = _draw(other);
        _vote(drawn[0], other, false);
        _vote(drawn[1], other, true);
        vm.roll(block.number + VOTE_WINDOW + 1);
        _cool();
        before = gasleft();
        market.settle(other);
        _log("settle (inconclusive, 2 votes, re-draw)", before - gasleft(), abi.encodeCall(market.settle, (other)));

        _accept(providers[1], id);
        vm.roll(block.number + RUN_BLOCKS + 1);
        _cool();
        before = gasleft();
        market.expire(id);
        _log("expire (slash)", before - gasleft(), abi.encodeCall(market.expire, (id)));

        _cool();
        vm.prank(client);
        before = gasleft();
        market.cancel(id);
        _log("cancel", before - gasleft(), abi.encodeCall(market.cancel, (id)));
    }

    function _cool() internal {
        vm.cool(address(market));
        vm.cool(address(registry));
        vm.cool(address(token));
    }

    /// A 2,048-byte JSON job spec: printable bytes only, as a real spec.
    function _cornellSizedSpec() internal pure returns (bytes memory s) {
        s = bytes('{"version":1,"kind":"render","scene":{"materials":[');
        bytes memory item = bytes('{"albedo":[0.73,0.71,0.68],"emission":[0,0,0]},');
        while (s.length + item.length < 2048 - 2) {
            s = bytes.concat(s, item);
        }
        while (s.length < 2048 - 2) {
            s = bytes.concat(s, " ");
        }
        s = bytes.concat(s, "]}");
    }

    /// Execution gas measured here plus the intrinsic cost of `data`, both calldata rules.
    function _log(string memory what, uint256 exec, bytes memory data) internal pure {
        uint256 zeros;
        for (uint256 i; i < data.length; ++i) {
            if (data[i] == 0) ++zeros;
        }
        uint256 nonzeros = data.length - zeros;
        uint256 standard = 21_000 + 4 * zeros + 16 * nonzeros + exec;
        uint256 floor = 21_000 + 10 * (zeros + 4 * nonzeros);
        uint256 prague = standard > floor ? standard : floor;
        console2.log(what);
        console2.log("  calldata bytes", data.length, "exec", exec);
        console2.log("  tx gas", prague);
    }
}
