// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test, console} from "forge-std/Test.sol";
import {BIG} from "../../src/BIG.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {ComputeMarket} from "../../src/ComputeMarket.sol";
import {IComputeMarket} from "../../src/interfaces/IComputeMarket.sol";
import {ComputeHandler} from "./ComputeHandler.sol";

/// The compute market never creates, loses or double-counts BIG, and jobs only move along the
/// edges of their state machine, whatever clients, providers and verifiers do.
contract ComputeInvariantTest is Test {
    uint256 constant SUPPLY = 10_000_000 ether;

    BIG token;
    ProviderRegistry registry;
    ComputeMarket market;
    ComputeHandler handler;

    function setUp() public {
        vm.roll(1000);
        token = new BIG(address(this), SUPPLY);
        registry = new ProviderRegistry(token, 1_000 ether, 30, address(this));
        market = new ComputeMarket(
            token,
            registry,
            IComputeMarket.Params({
                verifiersPerJob: 3, tilesPerVerifier: 4, voteWindowBlocks: 30, slashBps: 1_000, verifierFeeBps: 1_500
            })
        );
        registry.setMarket(address(market), true);

        address[] memory providers = new address[](7);
        for (uint256 i; i < providers.length; ++i) {
            providers[i] = makeAddr(string.concat("provider", vm.toString(i)));
            token.transfer(providers[i], 10_000 ether);
            vm.startPrank(providers[i]);
            token.approve(address(registry), type(uint256).max);
            registry.register(abi.encodePacked("peer", i), 3_000 ether);
            if (i < 5) market.enroll();
            vm.stopPrank();
        }
        address[] memory clients = new address[](2);
        for (uint256 i; i < clients.length; ++i) {
            clients[i] = makeAddr(string.concat("client", vm.toString(i)));
            token.transfer(clients[i], 1_000_000 ether);
            vm.prank(clients[i]);
            token.approve(address(market), type(uint256).max);
        }
        handler = new ComputeHandler(token, registry, market, providers, clients);
        targetContract(address(handler));
    }

    function _actors() internal view returns (address[] memory all) {
        uint256 np = handler.providerCount();
        all = new address[](np + handler.clientCount());
        for (uint256 i; i < np; ++i) {
            all[i] = handler.providers(i);
        }
        for (uint256 i; i < handler.clientCount(); ++i) {
            all[np + i] = handler.clients(i);
        }
    }

    function _escrow() internal view returns (uint256 sum) {
        for (uint256 id = 1; id <= market.jobCount(); ++id) {
            sum += market.getJob(id).escrow;
        }
    }

    /// The market holds exactly the escrow of its jobs plus what every account may claim.
    function invariant_balanceIsEscrowPlusClaimable() public view {
        address[] memory all = _actors();
        uint256 unclaimed;
        for (uint256 i; i < all.length; ++i) {
            unclaimed += market.claimable(all[i]);
        }
        assertEq(token.balanceOf(address(market)), _escrow() + unclaimed, "market balance");
    }

    /// What clients paid in (plus the slashes put back into escrows) is what is still escrowed,
    /// what was credited and what was refunded.
    function invariant_paymentsAccountedFor() public view {
        address[] memory all = _actors();
        uint256 earned;
        uint256 unclaimed;
        for (uint256 i; i < all.length; ++i) {
            earned += market.earned(all[i]);
            unclaimed += market.claimable(all[i]);
        }
        assertEq(handler.posted() + handler.refilled(), _escrow() + earned + handler.refunded(), "payments");
        assertEq(earned, handler.claimed() + unclaimed, "claimed");
    }

    /// No BIG appears or disappears; the registry holds exactly the stake.
    function invariant_supplyConserved() public view {
        address[] memory all = _actors();
        uint256 sum = token.balanceOf(address(this)) + token.balanceOf(address(market))
            + token.balanceOf(address(registry)) + token.balanceOf(market.BURN());
        uint256 stake;
        for (uint256 i; i < all.length; ++i) {
            sum += token.balanceOf(all[i]);
            stake += registry.slashableOf(all[i]);
        }
        assertEq(sum, SUPPLY, "supply");
        assertEq(token.balanceOf(address(registry)), stake, "registry balance");
        assertEq(registry.totalStake(), stake, "totalStake");
    }

    /// Jobs only move along the edges of the state machine (checked after every action).
    function invariant_stateMachine() public view {
        assertEq(handler.violations(), 0, handler.lastViolation());
    }

    /// Per job: escrow only while open; a provider exactly while working; commitments are the
    /// jobs in progress; the drawn verifiers are distinct, never the provider or the client,
    /// and there are no more votes than verifiers.
    function invariant_jobsConsistent() public view {
        address[] memory all = _actors();
        uint256[] memory working = new uint256[](all.length);
        for (uint256 id = 1; id <= market.jobCount(); ++id) {
            IComputeMarket.JobView memory j = market.getJob(id);
            bool open = j.state != IComputeMarket.State.Done && j.state != IComputeMarket.State.Cancelled;
            assertEq(j.escrow > 0, open, "escrow while open");
            assertLe(j.escrow, j.payment, "escrow <= payment");
            bool busy = j.state == IComputeMarket.State.Accepted || j.state == IComputeMarket.State.Committed
                || j.state == IComputeMarket.State.Drawn;
            assertEq(j.provider != address(0), busy || j.state == IComputeMarket.State.Done, "provider");
            if (busy) {
                for (uint256 i; i < all.length; ++i) {
                    if (all[i] == j.provider) ++working[i];
                }
                assertFalse(market.barred(id, j.provider), "barred provider working");
            }
            address[] memory drawn = market.verifiersOf(id);
            assertLe(drawn.length, market.verifiersPerJob());
            assertLe(uint256(j.matches) + j.mismatches, drawn.length, "votes");
            for (uint256 a; a < drawn.length; ++a) {
                assertTrue(drawn[a] != j.provider && drawn[a] != j.client, "drawn provider or client");
                for (uint256 b; b < a; ++b) {
                    assertTrue(drawn[a] != drawn[b], "duplicate verifier");
                }
            }
        }
        for (uint256 i; i < all.length; ++i) {
            assertEq(registry.commitmentsBy(address(market), all[i]), working[i], "commitments");
        }
    }

    /// The pool is a set that `isVerifier` reflects.
    function invariant_poolConsistent() public view {
        address[] memory pool = market.verifiers();
        assertEq(pool.length, market.verifierCount());
        assertLe(pool.length, market.MAX_POOL());
        for (uint256 a; a < pool.length; ++a) {
            assertTrue(market.isVerifier(pool[a]));
            for (uint256 b; b < a; ++b) {
                assertTrue(pool[a] != pool[b], "duplicate pool member");
            }
        }
        address[] memory all = _actors();
        uint256 members;
        for (uint256 i; i < all.length; ++i) {
            if (market.isVerifier(all[i])) ++members;
        }
        assertEq(members, pool.length);
    }

    /// Logs how often each path was taken in a run (`-vv`), to keep the handler honest.
    function afterInvariant() external view {
        string[21] memory names = [
            "post",
            "accept",
            "submit",
            "draw",
            "draw.delayed",
            "vote",
            "settle.paid",
            "settle.failed",
            "settle.redrawn",
            "expire",
            "cancel",
            "claim",
            "enroll",
            "leave",
            "evict",
            "addStake",
            "unbond",
            "withdraw",
            "step",
            "roll",
            "roll.long"
        ];
        string memory line;
        for (uint256 i; i < names.length; ++i) {
            line = string.concat(line, names[i], "=", vm.toString(handler.calls(bytes32(bytes(names[i])))), " ");
        }
        console.log(line);
    }
}
