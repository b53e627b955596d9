// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {BIG} from "../../src/BIG.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {StorageMarket} from "../../src/StorageMarket.sol";
import {IStorageMarket} from "../../src/interfaces/IStorageMarket.sol";
import {MerkleTree} from "./MerkleTree.sol";

/// A deployed BIG + registry + market, funded actors, and helpers to build deals and proofs.
abstract contract Base is Test {
    uint256 constant SUPPLY = 1_000_000_000 ether;
    uint256 constant MIN_STAKE = 1_000 ether;
    uint256 constant UNBONDING_BLOCKS = 50;
    uint256 constant PERIOD = 10;
    uint256 constant SLASH_BPS = 1_000; // 10 %
    uint256 constant PRICE = 1 ether;

    BIG token;
    ProviderRegistry registry;
    StorageMarket market;
    address client = makeAddr("client");
    address[] providers;

    /// Shards of the deals created with `_createDeal`, by deal id and slot.
    mapping(uint256 => mapping(uint256 => bytes)) shards;
    mapping(uint256 => uint256) segSizeOf;

    function setUp() public virtual {
        vm.roll(1000);
        token = new BIG(address(this), SUPPLY);
        registry = new ProviderRegistry(token, MIN_STAKE, UNBONDING_BLOCKS, address(this));
        market = new StorageMarket(token, registry, PERIOD, SLASH_BPS);
        registry.setMarket(address(market), true);
        token.transfer(client, 1_000_000 ether);
        vm.prank(client);
        token.approve(address(market), type(uint256).max);
        for (uint256 i; i < 8; ++i) {
            address p = makeAddr(string.concat("provider", vm.toString(i)));
            providers.push(p);
            token.transfer(p, 100_000 ether);
            vm.prank(p);
            token.approve(address(registry), type(uint256).max);
        }
    }

    function _register(address p) internal {
        vm.prank(p);
        registry.register(abi.encodePacked(hex"0024080112", keccak256(abi.encode(p))), MIN_STAKE * 2);
    }

    function _registerAll() internal {
        for (uint256 i; i < providers.length; ++i) {
            _register(providers[i]);
        }
    }

    /// Params of a deal over `k + m` shards of `shardLen` noise bytes each (kept for proving).
    function _params(uint256 salt, uint16 k, uint16 m, uint256 shardLen, uint32 seg, uint32 periods)
        internal
        returns (IStorageMarket.DealParams memory p)
    {
        uint256 n = uint256(k) + m;
        p.objectId = keccak256(abi.encode("object", salt));
        p.shardRoots = new bytes32[](n);
        p.shardSize = uint64(shardLen);
        p.segmentSize = seg;
        p.k = k;
        p.m = m;
        p.numPeriods = periods;
        p.pricePerSlotPeriod = uint128(PRICE);
        uint256 next = market.dealCount() + 1;
        for (uint256 i; i < n; ++i) {
            bytes memory shard = MerkleTree.noise(uint256(keccak256(abi.encode(salt, i))), shardLen);
            shards[next][i] = shard;
            p.shardRoots[i] = MerkleTree.root(shard, seg);
        }
        segSizeOf[next] = seg;
    }

    /// A 2+1 deal over 300-byte shards of 32-byte segments (10 segments, depth 4), 5 periods.
    function _createDeal() internal returns (uint256 dealId) {
        return _createDeal(2, 1, 300, 32, 5);
    }

    function _createDeal(uint16 k, uint16 m, uint256 shardLen, uint32 seg, uint32 periods)
        internal
        returns (uint256 dealId)
    {
        IStorageMarket.DealParams memory p = _params(market.dealCount(), k, m, shardLen, seg, periods);
        vm.prank(client);
        dealId = market.createDeal(p);
    }

    function _take(address p, uint256 dealId, uint256 slot) internal {
        vm.prank(p);
        market.takeSlot(dealId, slot);
    }

    /// Rolls to the first block of `period` of a deal.
    function _rollToPeriod(uint256 dealId, uint256 period) internal {
        vm.roll(market.periodStart(dealId, period));
    }

    /// The proof of the current period's challenge for a slot, from the stored shard.
    function _proof(uint256 dealId, uint256 slot) internal view returns (bytes memory segment, bytes32[] memory sib) {
        (, uint256 period) = market.currentPeriod(dealId);
        uint256 index = market.challengeIndex(dealId, slot, period);
        uint256 seg = segSizeOf[dealId];
        bytes memory shard = shards[dealId][slot];
        bytes32[][] memory levels = MerkleTree.build(shard, seg);
        segment = MerkleTree.segmentAt(shard, seg, index);
        sib = MerkleTree.path(levels, index);
    }

    function _prove(address p, uint256 dealId, uint256 slot) internal {
        (bytes memory segment, bytes32[] memory sib) = _proof(dealId, slot);
        vm.prank(p);
        market.submitProof(dealId, slot, segment, sib);
    }
}
