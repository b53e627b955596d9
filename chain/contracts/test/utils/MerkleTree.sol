// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SegmentMerkle} from "../../src/lib/SegmentMerkle.sol";

/// Reference tree builder for tests, written from the prose rules (not from the contract's
/// assembly): whole trees in memory, proofs by index, and "uniform" trees whose every leaf is the
/// same segment, so that one proof fits any challenged index of a large shard.
library MerkleTree {
    function leaf(bytes memory segment) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes1(0x00), segment));
    }

    function node(bytes32 left, bytes32 right) internal pure returns (bytes32) {
        return keccak256(abi.encodePacked(bytes1(0x01), left, right));
    }

    /// Segment `i` of `shard`, zero-padded to `seg` bytes.
    function segmentAt(bytes memory shard, uint256 seg, uint256 i) internal pure returns (bytes memory out) {
        out = new bytes(seg);
        uint256 start = i * seg;
        for (uint256 j; j < seg && start + j < shard.length; ++j) {
            out[j] = shard[start + j];
        }
    }

    /// All levels of the tree over `shard`: `levels[0]` are the `2^d` leaf positions (empty ones
    /// are `bytes32(0)`), `levels[d][0]` is the root.
    function build(bytes memory shard, uint256 seg) internal pure returns (bytes32[][] memory levels) {
        uint256 n = SegmentMerkle.leafCount(shard.length, seg);
        uint256 d = SegmentMerkle.depthFor(n);
        levels = new bytes32[][](d + 1);
        levels[0] = new bytes32[](1 << d);
        for (uint256 i; i < n; ++i) {
            levels[0][i] = leaf(segmentAt(shard, seg, i));
        }
        for (uint256 l = 1; l <= d; ++l) {
            uint256 width = 1 << (d - l);
            levels[l] = new bytes32[](width);
            for (uint256 i; i < width; ++i) {
                levels[l][i] = node(levels[l - 1][2 * i], levels[l - 1][2 * i + 1]);
            }
        }
    }

    function root(bytes memory shard, uint256 seg) internal pure returns (bytes32) {
        if (shard.length == 0) return bytes32(0);
        bytes32[][] memory levels = build(shard, seg);
        return levels[levels.length - 1][0];
    }

    /// Bottom-up siblings of leaf `index`.
    function path(bytes32[][] memory levels, uint256 index) internal pure returns (bytes32[] memory sib) {
        uint256 d = levels.length - 1;
        sib = new bytes32[](d);
        for (uint256 l; l < d; ++l) {
            sib[l] = levels[l][index ^ 1];
            index >>= 1;
        }
    }

    /// A tree of depth `d` whose every leaf holds `segment`: the path is the same for every index.
    function uniform(bytes memory segment, uint256 d) internal pure returns (bytes32 r, bytes32[] memory sib) {
        sib = new bytes32[](d);
        r = leaf(segment);
        for (uint256 l; l < d; ++l) {
            sib[l] = r;
            r = node(r, r);
        }
    }

    /// Deterministic pseudo-random bytes (no zero bytes, like dense real data).
    function noise(uint256 seed, uint256 len) internal pure returns (bytes memory out) {
        out = new bytes(len);
        bytes32 h;
        for (uint256 i; i < len; ++i) {
            if (i % 32 == 0) h = keccak256(abi.encode(seed, i));
            out[i] = bytes1(uint8(h[i % 32]) | 1);
        }
    }
}
