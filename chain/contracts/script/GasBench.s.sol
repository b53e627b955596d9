// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Script, console} from "forge-std/Script.sol";
import {BIG} from "../src/BIG.sol";
import {ProviderRegistry} from "../src/ProviderRegistry.sol";
import {StorageMarket} from "../src/StorageMarket.sol";
import {IStorageMarket} from "../src/interfaces/IStorageMarket.sol";
import {MerkleTree} from "../test/utils/MerkleTree.sol";

/// Setup half of `script/gas-bench.sh`: deploys the contracts on an anvil chain, then per segment
/// size creates one-slot deals over "uniform" shards (every segment equal, so one proof answers
/// any challenge) that the broadcaster takes, and prints the calldata of the proofs to send.
contract GasBench is Script {
    function deploy() external {
        vm.startBroadcast();
        address me = msg.sender;
        BIG token = new BIG(me, 1e27);
        ProviderRegistry registry = new ProviderRegistry(token, 1 ether, 100, me);
        StorageMarket market = new StorageMarket(token, registry, 256, 1_000);
        registry.setMarket(address(market), true);
        token.approve(address(registry), type(uint256).max);
        token.approve(address(market), type(uint256).max);
        registry.register(hex"0024080112", 10 ether);
        vm.stopBroadcast();
        console.log("MARKET", address(market));
    }

    /// `count` deals of `seg`-byte segments and tree depth `depth`; prints one `submitProof`
    /// calldata for the first and one `submitProofs` calldata for all the others.
    function prepare(StorageMarket market, uint256 seg, uint256 depth, uint256 count) external {
        IStorageMarket.Proof[] memory proofs = new IStorageMarket.Proof[](count);
        vm.startBroadcast();
        for (uint256 i; i < count; ++i) {
            bytes memory segment = MerkleTree.noise(uint256(keccak256(abi.encode(seg, depth, i))), seg);
            (bytes32 root, bytes32[] memory sib) = MerkleTree.uniform(segment, depth);
            IStorageMarket.DealParams memory p;
            p.objectId = keccak256(abi.encode("bench", seg, depth, i));
            p.shardRoots = new bytes32[](1);
            p.shardRoots[0] = root;
            p.shardSize = uint64(seg << depth);
            p.segmentSize = uint32(seg);
            p.k = 1;
            p.numPeriods = 4;
            p.pricePerSlotPeriod = 1 ether;
            uint256 id = market.createDeal(p);
            market.takeSlot(id, 0);
            proofs[i] = IStorageMarket.Proof(id, 0, segment, sib);
        }
        vm.stopBroadcast();
        IStorageMarket.Proof memory first = proofs[0];
        // Block numbers of the simulation are not the chain's: the caller asks for the start.
        console.log("LAST", proofs[count - 1].dealId);
        console.log(
            "SINGLE", vm.toString(abi.encodeCall(market.submitProof, (first.dealId, 0, first.segment, first.siblings)))
        );
        if (count > 1) {
            IStorageMarket.Proof[] memory rest = new IStorageMarket.Proof[](count - 1);
            for (uint256 i = 1; i < count; ++i) {
                rest[i - 1] = proofs[i];
            }
            console.log("BATCH", vm.toString(abi.encodeCall(market.submitProofs, (rest))));
        }
    }
}
