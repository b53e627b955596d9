// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {BIG} from "../src/BIG.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {IProviderRegistry} from "../src/interfaces/IProviderRegistry.sol";

contract ProviderRegistryTest is Test {
    uint256 constant MIN = 1_000 ether;
    uint256 constant DELAY = 50;

    BIG token;
    ProviderRegistry reg;
    address owner = makeAddr("owner");
    address market = makeAddr("market");
    address p = makeAddr("provider");
    bytes peer = hex"002408011220aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899";

    function setUp() public {
        token = new BIG(address(this), 1_000_000 ether);
        reg = new ProviderRegistry(token, MIN, DELAY, owner);
        vm.prank(owner);
        reg.setMarket(market, true);
        token.transfer(p, 10_000 ether);
        vm.prank(p);
        token.approve(address(reg), type(uint256).max);
    }

    function _register(uint256 stake) internal {
        vm.prank(p);
        reg.register(peer, stake);
    }

    // ---------------------------------------------------------------------------------------------
    // Construction and owner

    function test_constructor() public view {
        assertEq(address(reg.token()), address(token));
        assertEq(reg.minStake(), MIN);
        assertEq(reg.unbondingBlocks(), DELAY);
        assertEq(reg.owner(), owner);
        assertEq(reg.MAX_PEER_ID_LENGTH(), 64);
    }

    function test_constructor_rejects() public {
        vm.expectRevert(IProviderRegistry.ZeroAddress.selector);
        new ProviderRegistry(IERC20(address(0)), MIN, DELAY, owner);
        vm.expectRevert(IProviderRegistry.ZeroAmount.selector);
        new ProviderRegistry(token, 0, DELAY, owner);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableInvalidOwner.selector, address(0)));
        new ProviderRegistry(token, MIN, DELAY, address(0));
    }

    function test_setMarket_onlyOwner() public {
        address m2 = makeAddr("m2");
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        reg.setMarket(m2, true);
        vm.expectEmit(address(reg));
        emit IProviderRegistry.MarketAuthorised(m2, true);
        vm.prank(owner);
        reg.setMarket(m2, true);
        assertTrue(reg.isMarket(m2));
        vm.prank(owner);
        reg.setMarket(m2, false);
        assertFalse(reg.isMarket(m2));
        vm.prank(owner);
        vm.expectRevert(IProviderRegistry.ZeroAddress.selector);
        reg.setMarket(address(0), true);
    }

    function test_ownershipTransferIsTwoStep() public {
        address next = makeAddr("next");
        vm.prank(owner);
        reg.transferOwnership(next);
        assertEq(reg.owner(), owner);
        vm.prank(next);
        reg.acceptOwnership();
        assertEq(reg.owner(), next);
    }

    // ---------------------------------------------------------------------------------------------
    // Registration

    function test_register() public {
        vm.expectEmit(address(reg));
        emit IProviderRegistry.ProviderRegistered(p, peer, MIN);
        _register(MIN);
        assertTrue(reg.isRegistered(p));
        assertEq(reg.stakeOf(p), MIN);
        assertEq(reg.slashableOf(p), MIN);
        assertEq(reg.peerIdOf(p), peer);
        assertTrue(reg.canServe(p));
        assertEq(reg.totalStake(), MIN);
        assertEq(token.balanceOf(address(reg)), MIN);
        assertEq(reg.commitmentsOf(p), 0);
    }

    function test_register_rejects() public {
        vm.startPrank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.StakeBelowMinimum.selector, MIN - 1, MIN));
        reg.register(peer, MIN - 1);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.InvalidPeerId.selector, 0));
        reg.register("", MIN);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.InvalidPeerId.selector, 65));
        reg.register(new bytes(65), MIN);
        reg.register(peer, MIN);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.AlreadyRegistered.selector, p));
        reg.register(peer, MIN);
        vm.stopPrank();

        address poor = makeAddr("poor");
        vm.startPrank(poor);
        token.approve(address(reg), type(uint256).max);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, poor, 0, MIN));
        reg.register(peer, MIN);
        vm.stopPrank();
    }

    function test_registerWithPermit() public {
        (address signer, uint256 key) = makeAddrAndKey("signer");
        token.transfer(signer, MIN);
        bytes32 typehash =
            keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                token.DOMAIN_SEPARATOR(),
                keccak256(abi.encode(typehash, signer, address(reg), MIN, 0, block.timestamp))
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        vm.prank(signer);
        reg.registerWithPermit(peer, MIN, block.timestamp, v, r, s);
        assertEq(reg.stakeOf(signer), MIN);
        // A bad permit is ignored, and without allowance the transfer fails.
        address other = makeAddr("other");
        token.transfer(other, MIN);
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(reg), 0, MIN));
        reg.registerWithPermit(peer, MIN, block.timestamp, v, r, s);
    }

    function test_setPeerId() public {
        _register(MIN);
        bytes memory next = hex"0024080112201111";
        vm.expectEmit(address(reg));
        emit IProviderRegistry.PeerIdChanged(p, next);
        vm.prank(p);
        reg.setPeerId(next);
        assertEq(reg.peerIdOf(p), next);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.InvalidPeerId.selector, 0));
        reg.setPeerId("");
        vm.prank(makeAddr("x"));
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotRegistered.selector, makeAddr("x")));
        reg.setPeerId(next);
    }

    // ---------------------------------------------------------------------------------------------
    // Stake

    function test_addStake() public {
        _register(MIN);
        vm.expectEmit(address(reg));
        emit IProviderRegistry.StakeAdded(p, 5 ether, MIN + 5 ether);
        vm.prank(p);
        reg.addStake(5 ether);
        assertEq(reg.stakeOf(p), MIN + 5 ether);
        assertEq(reg.totalStake(), MIN + 5 ether);
        vm.prank(p);
        vm.expectRevert(IProviderRegistry.ZeroAmount.selector);
        reg.addStake(0);
        vm.prank(makeAddr("x"));
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotRegistered.selector, makeAddr("x")));
        reg.addStake(1);
    }

    function test_unbondAndWithdraw() public {
        _register(3 * MIN);
        uint256 ready = block.number + DELAY;
        vm.expectEmit(address(reg));
        emit IProviderRegistry.UnbondRequested(p, MIN, MIN, ready);
        vm.prank(p);
        reg.requestUnbond(MIN);
        assertEq(reg.stakeOf(p), 2 * MIN);
        assertEq(reg.slashableOf(p), 3 * MIN);
        (uint256 amount, uint256 readyBlock) = reg.unbondingOf(p);
        assertEq(amount, MIN);
        assertEq(readyBlock, ready);

        vm.roll(ready - 1);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.UnbondingNotReady.selector, ready));
        reg.withdraw();

        // A second request adds up and restarts the timer.
        vm.prank(p);
        reg.requestUnbond(MIN);
        (amount, readyBlock) = reg.unbondingOf(p);
        assertEq(amount, 2 * MIN);
        assertEq(readyBlock, ready - 1 + DELAY);
        vm.roll(readyBlock);
        uint256 bal = token.balanceOf(p);
        vm.expectEmit(address(reg));
        emit IProviderRegistry.Withdrawn(p, 2 * MIN);
        vm.prank(p);
        assertEq(reg.withdraw(), 2 * MIN);
        assertEq(token.balanceOf(p), bal + 2 * MIN);
        assertEq(reg.totalStake(), MIN);
        assertEq(token.balanceOf(address(reg)), MIN);
        vm.prank(p);
        vm.expectRevert(IProviderRegistry.NothingToWithdraw.selector);
        reg.withdraw();
        // Still registered, still serving with exactly the minimum.
        assertTrue(reg.canServe(p));
    }

    function test_unbond_rejects() public {
        _register(MIN);
        vm.startPrank(p);
        vm.expectRevert(IProviderRegistry.ZeroAmount.selector);
        reg.requestUnbond(0);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.InsufficientStake.selector, MIN + 1, MIN));
        reg.requestUnbond(MIN + 1);
        vm.stopPrank();
        vm.prank(makeAddr("x"));
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotRegistered.selector, makeAddr("x")));
        reg.requestUnbond(1);
        vm.prank(makeAddr("x"));
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotRegistered.selector, makeAddr("x")));
        reg.withdraw();
        // Fully unbonded (no commitments): registered but cannot serve.
        vm.prank(p);
        reg.requestUnbond(MIN);
        assertFalse(reg.canServe(p));
        assertTrue(reg.isRegistered(p));
    }

    function test_commitmentsGuardTheMinimum() public {
        _register(2 * MIN);
        vm.expectEmit(address(reg));
        emit IProviderRegistry.CommitmentsChanged(p, market, 1);
        vm.prank(market);
        reg.addCommitment(p);
        assertEq(reg.commitmentsOf(p), 1);
        vm.prank(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.CommittedStakeBelowMinimum.selector, MIN - 1, MIN));
        reg.requestUnbond(MIN + 1);
        vm.prank(market);
        reg.removeCommitment(p);
        vm.prank(p);
        reg.requestUnbond(2 * MIN);
    }

    function test_commitments_rejects() public {
        vm.prank(market);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotRegistered.selector, p));
        reg.addCommitment(p);
        _register(MIN);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotMarket.selector, address(this)));
        reg.addCommitment(p);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NoCommitment.selector, address(this), p));
        reg.removeCommitment(p);
        // A de-authorised market still ends what it holds.
        vm.prank(market);
        reg.addCommitment(p);
        vm.prank(owner);
        reg.setMarket(market, false);
        vm.prank(market);
        reg.removeCommitment(p);
        assertEq(reg.commitmentsOf(p), 0);
        assertEq(reg.commitmentsBy(market, p), 0);
    }

    // ---------------------------------------------------------------------------------------------
    // Slashing

    function test_slash_bondedThenUnbonding() public {
        _register(3 * MIN);
        vm.prank(p);
        reg.requestUnbond(2 * MIN);
        address beneficiary = makeAddr("beneficiary");
        vm.expectEmit(address(reg));
        emit IProviderRegistry.Slashed(p, market, MIN + 10, beneficiary);
        vm.prank(market);
        assertEq(reg.slash(p, MIN + 10, beneficiary), MIN + 10);
        assertEq(reg.stakeOf(p), 0);
        (uint256 unbonding,) = reg.unbondingOf(p);
        assertEq(unbonding, 2 * MIN - 10);
        assertEq(token.balanceOf(beneficiary), MIN + 10);
        assertEq(reg.totalStake(), 2 * MIN - 10);
        // More than is left: capped.
        vm.prank(market);
        assertEq(reg.slash(p, 100 * MIN, beneficiary), 2 * MIN - 10);
        assertEq(reg.slashableOf(p), 0);
        // Nothing left: zero, no transfer, no event.
        vm.prank(market);
        assertEq(reg.slash(p, 1, beneficiary), 0);
        assertEq(token.balanceOf(address(reg)), 0);
    }

    function test_slash_rejects() public {
        _register(MIN);
        vm.expectRevert(abi.encodeWithSelector(IProviderRegistry.NotMarket.selector, address(this)));
        reg.slash(p, 1, address(this));
        vm.prank(market);
        vm.expectRevert(IProviderRegistry.ZeroAddress.selector);
        reg.slash(p, 1, address(0));
        // Unknown provider: nothing to take.
        vm.prank(market);
        assertEq(reg.slash(makeAddr("nobody"), 1, market), 0);
    }

    function testFuzz_slashNeverExceedsStake(uint256 stake, uint256 unbond, uint256 amount) public {
        stake = bound(stake, MIN, 10_000 ether);
        unbond = bound(unbond, 0, stake);
        _register(stake);
        if (unbond > 0) {
            vm.prank(p);
            reg.requestUnbond(unbond);
        }
        vm.prank(market);
        uint256 slashed = reg.slash(p, amount, market);
        assertEq(slashed, amount < stake ? amount : stake);
        assertEq(reg.slashableOf(p), stake - slashed);
        assertEq(token.balanceOf(address(reg)), reg.totalStake());
    }
}
