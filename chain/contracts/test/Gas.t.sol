// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test, console} from "forge-std/Test.sol";
import {BIG} from "../src/BIG.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {StorageMarket} from "../src/StorageMarket.sol";
import {IStorageMarket} from "../src/interfaces/IStorageMarket.sol";
import {MerkleTree} from "./utils/MerkleTree.sol";

/// Proof gas by segment size at depth 16 (a 64 Ki-segment shard: 16 MiB at 256 B, 64 MiB at
/// 1 KiB), single and 32 per batch, over one-slot deals. Feeds `forge test --gas-report` (run with
/// `--isolate` for per-transaction figures) and logs the calldata each proof costs under the
/// pre-Prague (EIP-2028) and Prague (EIP-7623 floor) rules. GAS.md has the anvil receipts.
contract GasTest is Test {
    uint256 constant DEPTH = 16;
    uint256 constant BATCH = 32;

    BIG token;
    ProviderRegistry registry;
    StorageMarket market;
    address prover = makeAddr("prover");
    address client = makeAddr("client");

    function setUp() public {
        vm.roll(1000);
        token = new BIG(address(this), 1e27);
        registry = new ProviderRegistry(token, 1 ether, 100, address(this));
        market = new StorageMarket(token, registry, 256, 1_000);
        registry.setMarket(address(market), true);
        token.transfer(prover, 10 ether);
        token.transfer(client, 1e24);
        vm.prank(prover);
        token.approve(address(registry), type(uint256).max);
        vm.prank(prover);
        registry.register(hex"00240801", 10 ether);
        vm.prank(client);
        token.approve(address(market), type(uint256).max);
    }

    function _deal(uint256 salt, uint256 seg)
        internal
        returns (uint256 id, bytes memory segment, bytes32[] memory sib)
    {
        segment = MerkleTree.noise(salt, seg);
        bytes32 root;
        (root, sib) = MerkleTree.uniform(segment, DEPTH);
        IStorageMarket.DealParams memory p;
        p.objectId = keccak256(abi.encode(salt));
        p.shardRoots = new bytes32[](1);
        p.shardRoots[0] = root;
        p.shardSize = uint64(seg << DEPTH);
        p.segmentSize = uint32(seg);
        p.k = 1;
        p.numPeriods = 10;
        p.pricePerSlotPeriod = 1 ether;
        vm.prank(client);
        id = market.createDeal(p);
        vm.prank(prover);
        market.takeSlot(id, 0);
    }

    /// One earlier proof, so the prover's reward word is already nonzero (the steady state).
    function _warmUp() internal {
        (uint256 id, bytes memory segment, bytes32[] memory sib) = _deal(999, 32);
        vm.roll(market.periodStart(id, 0));
        vm.prank(prover);
        market.submitProof(id, 0, segment, sib);
    }

    function _single(uint256 seg) internal {
        (uint256 id, bytes memory segment, bytes32[] memory sib) = _deal(seg, seg);
        _warmUp();
        bytes memory data = abi.encodeCall(market.submitProof, (id, 0, segment, sib));
        vm.cool(address(market));
        vm.cool(address(registry));
        vm.prank(prover);
        uint256 before = gasleft();
        market.submitProof(id, 0, segment, sib);
        uint256 used = before - gasleft();
        _log("single", seg, 1, used, data);
    }

    function _batch(uint256 seg) internal {
        IStorageMarket.Proof[] memory proofs = new IStorageMarket.Proof[](BATCH);
        for (uint256 i; i < BATCH; ++i) {
            (uint256 id, bytes memory segment, bytes32[] memory sib) = _deal(seg * 1000 + i, seg);
            proofs[i] = IStorageMarket.Proof(id, 0, segment, sib);
        }
        _warmUp();
        bytes memory data = abi.encodeCall(market.submitProofs, (proofs));
        vm.cool(address(market));
        vm.cool(address(registry));
        vm.prank(prover);
        uint256 before = gasleft();
        assertEq(market.submitProofs(proofs), BATCH);
        uint256 used = before - gasleft();
        _log("batch", seg, BATCH, used, data);
    }

    /// Execution gas measured here plus the intrinsic cost of `data`, both calldata rules.
    function _log(string memory kind, uint256 seg, uint256 n, uint256 exec, bytes memory data) internal pure {
        uint256 zeros;
        for (uint256 i; i < data.length; ++i) {
            if (data[i] == 0) ++zeros;
        }
        uint256 nonzeros = data.length - zeros;
        uint256 standard = 21_000 + 4 * zeros + 16 * nonzeros + exec;
        uint256 floor = 21_000 + 10 * (zeros + 4 * nonzeros);
        uint256 prague = standard > floor ? standard : floor;
        console.log(string.concat(kind, " seg=", vm.toString(seg), " proofs=", vm.toString(n)));
        console.log("  calldata bytes", data.length, "exec", exec);
        console.log("  tx gas pre-Prague", standard, "per proof", standard / n);
        console.log("  tx gas Prague    ", prague, "per proof", prague / n);
    }

    function test_gas_single_256() public {
        _single(256);
    }

    function test_gas_single_512() public {
        _single(512);
    }

    function test_gas_single_1024() public {
        _single(1024);
    }

    function test_gas_batch32_32() public {
        _batch(32);
    }

    function test_gas_batch32_256() public {
        _batch(256);
    }

    function test_gas_batch32_512() public {
        _batch(512);
    }

    function test_gas_batch32_1024() public {
        _batch(1024);
    }
}
