// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {CommonBase} from "forge-std/Base.sol";
import {StdCheats} from "forge-std/StdCheats.sol";
import {StdUtils} from "forge-std/StdUtils.sol";
import {BIG} from "../../src/BIG.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {StorageMarket} from "../../src/StorageMarket.sol";
import {IStorageMarket} from "../../src/interfaces/IStorageMarket.sol";
import {MerkleTree} from "../utils/MerkleTree.sol";

/// Drives the market with random clients and providers: deals, takes, proofs (single and
/// batched), silence, misses, releases, finishes, claims, stake moves and time.
contract MarketHandler is CommonBase, StdCheats, StdUtils {
    BIG public token;
    ProviderRegistry public registry;
    StorageMarket public market;

    address[] public providers;
    address[] public clients;
    uint256[] public deals;
    /// Every address that may hold BIG, for the supply check.
    address[] public holders;

    /// Proof segment of each slot (its shard is that segment repeated `2^depth` times).
    mapping(uint256 => mapping(uint256 => bytes)) internal _segment;
    mapping(uint256 => uint256) internal _depth;

    mapping(bytes32 => uint256) public calls;

    constructor(
        BIG token_,
        ProviderRegistry registry_,
        StorageMarket market_,
        address[] memory providers_,
        address[] memory clients_
    ) {
        token = token_;
        registry = registry_;
        market = market_;
        providers = providers_;
        clients = clients_;
        for (uint256 i; i < providers_.length; ++i) {
            holders.push(providers_[i]);
        }
        for (uint256 i; i < clients_.length; ++i) {
            holders.push(clients_[i]);
        }
    }

    function dealCount() external view returns (uint256) {
        return deals.length;
    }

    function providerCount() external view returns (uint256) {
        return providers.length;
    }

    function holderCount() external view returns (uint256) {
        return holders.length;
    }

    function _provider(uint256 seed) internal view returns (address) {
        return providers[seed % providers.length];
    }

    function _deal(uint256 seed) internal view returns (uint256) {
        return deals[seed % deals.length];
    }

    // ---------------------------------------------------------------------------------------------
    // Actions

    /// Every action is a transaction in a block of its own, as on a chain that mines each one.
    modifier tick() {
        vm.roll(block.number + 1);
        _;
    }

    function createDeal(uint256 clientSeed, uint256 shape, uint256 price) external tick {
        address client = clients[clientSeed % clients.length];
        uint16 k = uint16(1 + shape % 3);
        uint16 m = uint16((shape >> 8) % 3);
        uint32 periods = uint32(2 + (shape >> 16) % 4);
        uint256 depth = (shape >> 24) % 6;
        uint32 seg = (shape >> 32) % 2 == 0 ? 32 : 64;
        IStorageMarket.DealParams memory p;
        p.objectId = keccak256(abi.encode(shape, deals.length));
        p.k = k;
        p.m = m;
        p.segmentSize = seg;
        p.shardSize = uint64((uint256(1) << depth) * seg);
        p.numPeriods = periods;
        p.pricePerSlotPeriod = uint128(bound(price, 0, 10 ether));
        p.shardRoots = new bytes32[](uint256(k) + m);
        uint256 id = market.dealCount() + 1;
        for (uint256 i; i < p.shardRoots.length; ++i) {
            bytes memory segment = MerkleTree.noise(uint256(keccak256(abi.encode(id, i))), seg);
            (p.shardRoots[i],) = MerkleTree.uniform(segment, depth);
            _segment[id][i] = segment;
        }
        _depth[id] = depth;
        vm.prank(client);
        try market.createDeal(p) returns (uint256 got) {
            deals.push(got);
            ++calls["createDeal"];
        } catch {
            ++calls["createDeal.fail"];
        }
    }

    /// A provider takes a free slot, scanning the deals from a random one (may still be refused:
    /// too late, not eligible).
    function takeSlot(uint256 dealSeed, uint256 slotSeed, uint256 who) external tick {
        _takeSlot(dealSeed, slotSeed, who);
    }

    function _takeSlot(uint256 dealSeed, uint256 slotSeed, uint256 who) internal {
        address p = _provider(who);
        for (uint256 j; j < deals.length; ++j) {
            uint256 id = deals[(dealSeed % deals.length + j) % deals.length];
            (bool held,) = market.slotOf(id, p);
            IStorageMarket.DealView memory d = market.getDeal(id);
            (bool started, uint256 period) = market.currentPeriod(id);
            if (held || d.finished || (started && period + 1 >= d.numPeriods)) continue;
            uint256 n = uint256(d.k) + d.m;
            for (uint256 k; k < n; ++k) {
                uint256 slot = (slotSeed % n + k) % n;
                if (market.slotInfo(id, slot).provider != address(0)) continue;
                vm.prank(p);
                try market.takeSlot(id, slot) {
                    ++calls["takeSlot"];
                } catch {
                    ++calls["takeSlot.fail"];
                }
                return;
            }
        }
    }

    /// One provider proves one of its slots (the first held from a random deal on), maybe corrupted.
    function prove(uint256 dealSeed, uint256 who, bool corrupt) external tick {
        address p = _provider(who);
        for (uint256 j; j < deals.length; ++j) {
            uint256 id = deals[(dealSeed % deals.length + j) % deals.length];
            (bool held, uint256 slot) = market.slotOf(id, p);
            if (!held || !_active(id)) continue;
            (bytes memory segment, bytes32[] memory sib) = _proof(id, slot);
            if (corrupt) segment[0] ^= 0x02;
            vm.prank(p);
            try market.submitProof(id, slot, segment, sib) {
                ++calls["prove"];
            } catch (bytes memory err) {
                ++calls["prove.fail"];
                if (err.length == 100) {
                    (,, uint8 status) = abi.decode(_tail(err), (uint256, uint256, uint8));
                    ++calls[statusKey(status)];
                }
            }
            return;
        }
    }

    /// Every provider batch-proves all the slots it holds, except those `silent` picks (about 1 in 4).
    function proveEveryone(uint256 silent) external tick {
        _proveEveryone(silent);
    }

    function _proveEveryone(uint256 silent) internal {
        for (uint256 i; i < providers.length; ++i) {
            if ((silent >> (2 * i)) & 3 == 0) continue; // a quarter stay silent
            _proveAll(providers[i]);
        }
    }

    function _proveAll(address p) internal {
        uint256 n;
        IStorageMarket.Proof[] memory proofs = new IStorageMarket.Proof[](deals.length);
        for (uint256 i; i < deals.length; ++i) {
            (bool held, uint256 slot) = market.slotOf(deals[i], p);
            if (!held || !_active(deals[i])) continue;
            (bytes memory segment, bytes32[] memory sib) = _proof(deals[i], slot);
            proofs[n++] = IStorageMarket.Proof(deals[i], slot, segment, sib);
        }
        if (n == 0) return;
        assembly {
            mstore(proofs, n)
        }
        vm.prank(p);
        calls["proveAll.accepted"] += market.submitProofs(proofs);
        ++calls["proveAll"];
    }

    function markMissed(uint256 dealSeed, uint256 slot) external tick {
        _markMissed(dealSeed, slot);
    }

    function _markMissed(uint256 dealSeed, uint256 slot) internal {
        if (deals.length == 0) return;
        try market.markMissed(_deal(dealSeed), slot % 6) {
            ++calls["markMissed"];
        } catch {
            ++calls["markMissed.fail"];
        }
    }

    function release(uint256 dealSeed, uint256 who) external tick {
        if (deals.length == 0) return;
        uint256 id = _deal(dealSeed);
        address p = _provider(who);
        (bool held, uint256 slot) = market.slotOf(id, p);
        if (!held) return;
        vm.prank(p);
        try market.releaseSlot(id, slot) {
            ++calls["release"];
        } catch {
            ++calls["release.fail"];
        }
    }

    function finish(uint256 dealSeed) external tick {
        _finish(dealSeed);
    }

    function _finish(uint256 dealSeed) internal {
        if (deals.length == 0) return;
        try market.finishDeal(_deal(dealSeed)) {
            ++calls["finish"];
        } catch {
            ++calls["finish.fail"];
        }
    }

    function claim(uint256 who) external tick {
        address p = _provider(who);
        vm.prank(p);
        try market.claimRewards() {
            ++calls["claim"];
        } catch {
            ++calls["claim.fail"];
        }
    }

    /// Stake moves: top-up, unbond or withdraw.
    function stakeOp(uint256 kind, uint256 who, uint256 amount) external tick {
        address p = _provider(who);
        vm.startPrank(p);
        kind %= 3;
        if (kind == 0) {
            try registry.addStake(bound(amount, 1, 100 ether)) {
                ++calls["addStake"];
            } catch {
                ++calls["addStake.fail"];
            }
        } else if (kind == 1) {
            try registry.requestUnbond(bound(amount, 1, 600 ether)) {
                ++calls["unbond"];
            } catch {
                ++calls["unbond.fail"];
            }
        } else {
            try registry.withdraw() {
                ++calls["withdraw"];
            } catch {
                ++calls["withdraw.fail"];
            }
        }
        vm.stopPrank();
    }

    /// A busy block: providers take free slots, most of them prove everything they hold, a
    /// watcher reports every default and over deals are finished, all picked by `seed`'s bits.
    function step(uint256 seed) external tick {
        for (uint256 i; i < providers.length; ++i) {
            if ((seed >> i) & 1 == 1) _takeSlot(seed >> 8, seed >> 16, i);
        }
        _proveEveryone(seed >> 24);
        if ((seed >> 40) & 1 == 1) {
            for (uint256 j; j < deals.length; ++j) {
                (bool over,) = _overOrMissed(deals[j]);
                if (over) _finish(j);
            }
        }
        if ((seed >> 41) & 1 == 1) {
            for (uint256 j; j < deals.length; ++j) {
                (, uint256 missedSlots) = _overOrMissed(deals[j]);
                for (uint256 slot; missedSlots != 0; ++slot) {
                    if (missedSlots & 1 == 1) _markMissed(j, slot);
                    missedSlots >>= 1;
                }
            }
        }
        ++calls["step"];
    }

    function _overOrMissed(uint256 id) internal view returns (bool over, uint256 missedSlots) {
        IStorageMarket.DealView memory d = market.getDeal(id);
        if (d.finished) return (false, 0);
        over = block.number >= d.endBlock;
        for (uint256 slot; slot < uint256(d.k) + d.m; ++slot) {
            (bool missed,) = market.missedPeriod(id, slot);
            if (missed) missedSlots |= 1 << slot;
        }
    }

    function roll(uint256 blocks) external {
        vm.roll(block.number + bound(blocks, 1, 6));
        ++calls["roll"];
    }

    // ---------------------------------------------------------------------------------------------

    /// In one of its proving periods (not in setup, not over).
    function _active(uint256 id) internal view returns (bool) {
        (bool started, uint256 period) = market.currentPeriod(id);
        return started && period < market.getDeal(id).numPeriods;
    }

    /// Key under which `calls` counts refused single proofs of a `ProofStatus`.
    function statusKey(uint256 status) public pure returns (bytes32) {
        return bytes32(uint256(keccak256("status")) + status);
    }

    function _tail(bytes memory err) internal pure returns (bytes memory out) {
        out = new bytes(err.length - 4);
        for (uint256 i; i < out.length; ++i) {
            out[i] = err[i + 4];
        }
    }

    function _proof(uint256 id, uint256 slot) internal view returns (bytes memory segment, bytes32[] memory sib) {
        segment = bytes.concat(_segment[id][slot]);
        (, sib) = MerkleTree.uniform(segment, _depth[id]);
    }
}
