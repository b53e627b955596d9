// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {MerkleHarness} from "./utils/MerkleHarness.sol";
import {MerkleTree} from "./utils/MerkleTree.sol";

/// The on-chain verifier against the Rust store's committed fixtures, and fuzzed corruptions.
contract SegmentMerkleTest is Test {
    string constant FIXTURES = "../../storage/fixtures/merkle-v1.json";

    MerkleHarness h;

    struct Case {
        bytes32 root;
        uint256 shardLen;
        uint256 seg;
        uint256 depth;
        bytes shard;
    }

    function setUp() public {
        h = new MerkleHarness();
    }

    function _case(string memory json, uint256 i) internal pure returns (Case memory c) {
        string memory p = string.concat(".cases[", vm.toString(i), "]");
        c.root = vm.parseJsonBytes32(json, string.concat(p, ".root"));
        c.shardLen = vm.parseJsonUint(json, string.concat(p, ".shard_len"));
        c.seg = vm.parseJsonUint(json, string.concat(p, ".segment_size"));
        c.depth = vm.parseJsonUint(json, string.concat(p, ".depth"));
        c.shard = vm.parseJsonBytes(json, string.concat(p, ".shard"));
    }

    function _siblings(string memory json, string memory p) internal view returns (bytes32[] memory) {
        // parseJsonBytes32Array cannot type an empty array; depth-0 proofs have none.
        if (!vm.keyExistsJson(json, string.concat(p, ".siblings[0]"))) return new bytes32[](0);
        return vm.parseJsonBytes32Array(json, string.concat(p, ".siblings"));
    }

    /// Every committed proof verifies, every corrupted variant fails, and the test's reference
    /// builder reproduces every committed root from the shard bytes.
    function test_rustFixtures() public view {
        string memory json = vm.readFile(FIXTURES);
        assertEq(vm.parseJsonBytes32(json, ".empty_leaf"), bytes32(0), "empty leaf");
        uint256 cases;
        uint256 proofs;
        for (uint256 i; vm.keyExistsJson(json, string.concat(".cases[", vm.toString(i), "]")); ++i) {
            Case memory c = _case(json, i);
            assertEq(c.shard.length, c.shardLen, "shard bytes");
            assertEq(MerkleTree.root(c.shard, c.seg), c.root, "reference root");
            if (c.shardLen > 0) assertEq(MerkleTree.build(c.shard, c.seg).length - 1, c.depth, "depth");
            for (uint256 j;; ++j) {
                string memory p = string.concat(".cases[", vm.toString(i), "].proofs[", vm.toString(j), "]");
                if (!vm.keyExistsJson(json, p)) break;
                uint256 index = vm.parseJsonUint(json, string.concat(p, ".index"));
                bytes memory segment = vm.parseJsonBytes(json, string.concat(p, ".segment"));
                bytes32[] memory sib = _siblings(json, p);
                assertEq(sib.length, c.depth, "fixture path length");
                assertTrue(h.verify(c.root, c.shardLen, c.seg, index, segment, sib), "fixture proof");
                _corruptions(c, index, segment, sib);
                ++proofs;
            }
            ++cases;
        }
        assertEq(cases, 7, "fixture cases");
        assertEq(proofs, 13, "fixture proofs");
    }

    function _corruptions(Case memory c, uint256 index, bytes memory segment, bytes32[] memory sib) internal view {
        uint256 n = (c.shardLen + c.seg - 1) / c.seg;
        // Every byte of the segment.
        for (uint256 b; b < segment.length; ++b) {
            bytes memory bad = bytes.concat(segment);
            bad[b] ^= 0x01;
            assertFalse(h.verify(c.root, c.shardLen, c.seg, index, bad, sib), "flipped segment byte");
        }
        // Every sibling, first and last byte.
        for (uint256 s; s < sib.length; ++s) {
            bytes32[] memory bad = _copy(sib);
            bad[s] ^= bytes32(uint256(1));
            assertFalse(h.verify(c.root, c.shardLen, c.seg, index, segment, bad), "flipped sibling low");
            bad[s] = sib[s] ^ bytes32(uint256(1) << 255);
            assertFalse(h.verify(c.root, c.shardLen, c.seg, index, segment, bad), "flipped sibling high");
        }
        // Every other index, and indexes past the shard.
        for (uint256 other; other < n + 2; ++other) {
            if (other == index) continue;
            // Two leaves of a uniform region would verify at each other's index only if equal.
            if (other < n && _sameSegment(c, other, index)) continue;
            assertFalse(h.verify(c.root, c.shardLen, c.seg, other, segment, sib), "other index");
        }
        assertFalse(h.verify(c.root, c.shardLen, c.seg, index + (1 << 48), segment, sib), "high index bits");
        // The root.
        assertFalse(h.verify(c.root ^ bytes32(uint256(1)), c.shardLen, c.seg, index, segment, sib), "root");
        // Segment length: one byte short, one byte long, unpadded.
        assertFalse(h.verify(c.root, c.shardLen, c.seg, index, _slice(segment, segment.length - 1), sib), "short");
        assertFalse(h.verify(c.root, c.shardLen, c.seg, index, bytes.concat(segment, hex"00"), sib), "long");
        // Path length: one missing, one extra.
        if (sib.length > 0) {
            bytes32[] memory shortPath = new bytes32[](sib.length - 1);
            for (uint256 s; s < shortPath.length; ++s) {
                shortPath[s] = sib[s];
            }
            assertFalse(h.verify(c.root, c.shardLen, c.seg, index, segment, shortPath), "short path");
        }
        bytes32[] memory longPath = new bytes32[](sib.length + 1);
        for (uint256 s; s < sib.length; ++s) {
            longPath[s] = sib[s];
        }
        assertFalse(h.verify(c.root, c.shardLen, c.seg, index, segment, longPath), "long path");
        // The shard length the deal declares: a shard twice as long has a deeper tree.
        assertFalse(h.verify(c.root, c.shardLen * 2 + c.seg, c.seg, index, segment, sib), "shard length");
    }

    function _sameSegment(Case memory c, uint256 a, uint256 b) internal pure returns (bool) {
        return keccak256(MerkleTree.segmentAt(c.shard, c.seg, a)) == keccak256(MerkleTree.segmentAt(c.shard, c.seg, b));
    }

    function _copy(bytes32[] memory a) internal pure returns (bytes32[] memory b) {
        b = new bytes32[](a.length);
        for (uint256 i; i < a.length; ++i) {
            b[i] = a[i];
        }
    }

    function _slice(bytes memory a, uint256 len) internal pure returns (bytes memory b) {
        b = new bytes(len);
        for (uint256 i; i < len; ++i) {
            b[i] = a[i];
        }
    }

    // ---------------------------------------------------------------------------------------------
    // Fuzz: any shard, any index; any single change is rejected.

    struct Fuzzed {
        bytes shard;
        uint256 seg;
        uint256 n;
        uint256 index;
        bytes32 root;
        bytes segment;
        bytes32[] sib;
    }

    function _fuzzed(uint256 seed, uint256 len, uint256 segLog, uint256 idx) internal pure returns (Fuzzed memory f) {
        f.seg = 32 << bound(segLog, 0, 2); // 32, 64, 128: keeps trees small enough to build
        f.shard = MerkleTree.noise(seed, bound(len, 1, 40 * f.seg));
        f.n = (f.shard.length + f.seg - 1) / f.seg;
        f.index = idx % f.n;
        bytes32[][] memory levels = MerkleTree.build(f.shard, f.seg);
        f.root = levels[levels.length - 1][0];
        f.segment = MerkleTree.segmentAt(f.shard, f.seg, f.index);
        f.sib = MerkleTree.path(levels, f.index);
    }

    function testFuzz_validProofVerifies(uint256 seed, uint256 len, uint256 segLog, uint256 idx) public view {
        Fuzzed memory f = _fuzzed(seed, len, segLog, idx);
        assertTrue(h.verify(f.root, f.shard.length, f.seg, f.index, f.segment, f.sib));
    }

    function testFuzz_badSegmentRejected(uint256 seed, uint256 len, uint256 idx, uint256 pos, uint8 mask) public view {
        Fuzzed memory f = _fuzzed(seed, len, seed >> 128, idx);
        mask = uint8(bound(mask, 1, 255));
        f.segment[pos % f.seg] ^= bytes1(mask);
        assertFalse(h.verify(f.root, f.shard.length, f.seg, f.index, f.segment, f.sib));
    }

    function testFuzz_badPathElementRejected(uint256 seed, uint256 len, uint256 idx, uint256 which, bytes32 mask)
        public
        view
    {
        Fuzzed memory f = _fuzzed(seed, bound(len, 33, 4000), seed >> 128, idx);
        vm.assume(mask != bytes32(0) && f.sib.length > 0);
        f.sib[which % f.sib.length] ^= mask;
        assertFalse(h.verify(f.root, f.shard.length, f.seg, f.index, f.segment, f.sib));
    }

    function testFuzz_badIndexRejected(uint256 seed, uint256 len, uint256 idx, uint256 other) public view {
        Fuzzed memory f = _fuzzed(seed, bound(len, 33, 4000), seed >> 128, idx);
        vm.assume(f.n > 1);
        other = bound(other, 0, f.n * 2);
        vm.assume(other != f.index);
        // Noise segments are distinct, so no other leaf equals this one.
        assertFalse(h.verify(f.root, f.shard.length, f.seg, other, f.segment, f.sib));
    }

    function testFuzz_badRootRejected(uint256 seed, uint256 len, uint256 idx, bytes32 mask) public view {
        Fuzzed memory f = _fuzzed(seed, len, seed >> 128, idx);
        vm.assume(mask != bytes32(0));
        assertFalse(h.verify(f.root ^ mask, f.shard.length, f.seg, f.index, f.segment, f.sib));
    }

    /// The assembly path folding equals the reference builder for any index of a deep tree.
    function testFuzz_uniformTreeAnyIndex(uint256 seed, uint256 d, uint256 idx) public view {
        d = bound(d, 0, 30);
        bytes memory segment = MerkleTree.noise(seed, 64);
        (bytes32 root, bytes32[] memory sib) = MerkleTree.uniform(segment, d);
        uint256 index = d == 0 ? 0 : idx % (uint256(1) << d);
        assertTrue(h.verify(root, (uint256(1) << d) * 64, 64, index, segment, sib));
        assertEq(h.rootFromPath(segment, sib, index), root);
    }
}
