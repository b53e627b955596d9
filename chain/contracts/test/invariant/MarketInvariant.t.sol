// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test, console} from "forge-std/Test.sol";
import {BIG} from "../../src/BIG.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {StorageMarket} from "../../src/StorageMarket.sol";
import {IStorageMarket} from "../../src/interfaces/IStorageMarket.sol";
import {MarketHandler} from "./MarketHandler.sol";

/// BIG is never created, lost or double-counted, whatever clients and providers do.
contract MarketInvariantTest is Test {
    uint256 constant SUPPLY = 10_000_000 ether;

    BIG token;
    ProviderRegistry registry;
    StorageMarket market;
    MarketHandler handler;

    function setUp() public {
        vm.roll(1000);
        token = new BIG(address(this), SUPPLY);
        registry = new ProviderRegistry(token, 1_000 ether, 30, address(this));
        market = new StorageMarket(token, registry, 8, 2_500);
        registry.setMarket(address(market), true);

        address[] memory providers = new address[](6);
        for (uint256 i; i < providers.length; ++i) {
            providers[i] = makeAddr(string.concat("provider", vm.toString(i)));
            token.transfer(providers[i], 10_000 ether);
            vm.startPrank(providers[i]);
            token.approve(address(registry), type(uint256).max);
            registry.register(abi.encodePacked("peer", i), 2_000 ether);
            vm.stopPrank();
        }
        address[] memory clients = new address[](2);
        for (uint256 i; i < clients.length; ++i) {
            clients[i] = makeAddr(string.concat("client", vm.toString(i)));
            token.transfer(clients[i], 1_000_000 ether);
            vm.prank(clients[i]);
            token.approve(address(market), type(uint256).max);
        }
        handler = new MarketHandler(token, registry, market, providers, clients);
        targetContract(address(handler));
    }

    function _escrow() internal view returns (uint256 sum) {
        for (uint256 i; i < handler.dealCount(); ++i) {
            sum += market.escrowOf(handler.deals(i));
        }
    }

    function _unclaimed() internal view returns (uint256 sum) {
        for (uint256 i; i < handler.providerCount(); ++i) {
            sum += market.claimable(handler.providers(i));
        }
    }

    function _stake() internal view returns (uint256 sum) {
        for (uint256 i; i < handler.providerCount(); ++i) {
            sum += registry.slashableOf(handler.providers(i));
        }
    }

    /// BIG held by the market and the registry is exactly escrow + unclaimed rewards + stake.
    function invariant_heldEqualsEscrowPlusRewardsPlusStake() public view {
        uint256 escrow = _escrow();
        uint256 unclaimed = _unclaimed();
        uint256 stake = _stake();
        assertEq(token.balanceOf(address(market)), escrow + unclaimed, "market balance");
        assertEq(token.balanceOf(address(registry)), stake, "registry balance");
        assertEq(registry.totalStake(), stake, "totalStake");
        assertEq(
            token.balanceOf(address(market)) + token.balanceOf(address(registry)), escrow + unclaimed + stake, "total"
        );
    }

    /// No BIG appears or disappears.
    function invariant_supplyConserved() public view {
        uint256 sum =
            token.balanceOf(address(this)) + token.balanceOf(address(market)) + token.balanceOf(address(registry));
        for (uint256 i; i < handler.holderCount(); ++i) {
            sum += token.balanceOf(handler.holders(i));
        }
        assertEq(sum, SUPPLY);
    }

    /// The registry's commitments are exactly the slots held, and no slot is paid more periods
    /// than the deal has.
    function invariant_commitmentsMatchSlots() public view {
        for (uint256 i; i < handler.providerCount(); ++i) {
            address p = handler.providers(i);
            uint256 held;
            for (uint256 j; j < handler.dealCount(); ++j) {
                (bool h,) = market.slotOf(handler.deals(j), p);
                if (h) ++held;
            }
            assertEq(registry.commitmentsOf(p), held, "commitments");
        }
        for (uint256 j; j < handler.dealCount(); ++j) {
            uint256 id = handler.deals(j);
            IStorageMarket.DealView memory d = market.getDeal(id);
            for (uint256 s; s < uint256(d.k) + d.m; ++s) {
                IStorageMarket.Slot memory slot = market.slotInfo(id, s);
                assertLe(slot.proofs, d.numPeriods, "proofs per slot");
                if (slot.provider != address(0)) {
                    (bool h, uint256 at) = market.slotOf(id, slot.provider);
                    assertTrue(h && at == s, "slot index");
                }
            }
        }
    }

    /// Lifetime rewards never fall below what is claimable.
    function invariant_earnedCoversClaimable() public view {
        for (uint256 i; i < handler.providerCount(); ++i) {
            address p = handler.providers(i);
            assertGe(market.earned(p), market.claimable(p));
        }
    }

    /// Logs how often each path succeeded in a run (`-vv`), to keep the handler honest.
    function afterInvariant() external view {
        string[21] memory names = [
            "step",
            "createDeal",
            "takeSlot",
            "takeSlot.fail",
            "prove",
            "prove.fail",
            "proveAll",
            "proveAll.accepted",
            "markMissed",
            "markMissed.fail",
            "release",
            "release.fail",
            "finish",
            "finish.fail",
            "claim",
            "claim.fail",
            "addStake",
            "unbond",
            "unbond.fail",
            "withdraw",
            "withdraw.fail"
        ];
        string memory line;
        for (uint256 i; i < names.length; ++i) {
            line = string.concat(line, names[i], "=", vm.toString(handler.calls(bytes32(bytes(names[i])))), " ");
        }
        console.log(line);
        line = "refused single proofs by ProofStatus:";
        for (uint256 st = 1; st < 9; ++st) {
            line = string.concat(line, " ", vm.toString(st), "=", vm.toString(handler.calls(handler.statusKey(st))));
        }
        console.log(line);
    }
}
