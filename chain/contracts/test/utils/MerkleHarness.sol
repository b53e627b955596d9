// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {SegmentMerkle} from "../../src/lib/SegmentMerkle.sol";

/// Exposes the contract-side verifier with calldata arguments, as the market uses it.
contract MerkleHarness {
    function verify(
        bytes32 root,
        uint256 shardLen,
        uint256 segmentSize,
        uint256 index,
        bytes calldata segment,
        bytes32[] calldata siblings
    ) external pure returns (bool) {
        return SegmentMerkle.verify(root, shardLen, segmentSize, index, segment, siblings);
    }

    function rootFromPath(bytes calldata segment, bytes32[] calldata siblings, uint256 index)
        external
        pure
        returns (bytes32)
    {
        return SegmentMerkle.rootFromPath(segment, siblings, index);
    }
}
