// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {Test} from "forge-std/Test.sol";
import {BIG} from "../src/BIG.sol";

contract BIGTest is Test {
    function test_fixedSupplyToHolder() public {
        address holder = makeAddr("holder");
        BIG t = new BIG(holder, 1e27);
        assertEq(t.totalSupply(), 1e27);
        assertEq(t.balanceOf(holder), 1e27);
        assertEq(t.name(), "BigFile");
        assertEq(t.symbol(), "BIG");
        assertEq(t.decimals(), 18);
    }

    function test_permitDomain() public {
        BIG t = new BIG(address(this), 1);
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = t.eip712Domain();
        assertEq(name, "BigFile");
        assertEq(version, "1");
        assertEq(chainId, block.chainid);
        assertEq(verifying, address(t));
    }

    function test_permitSetsAllowance() public {
        (address owner, uint256 key) = makeAddrAndKey("owner");
        BIG t = new BIG(owner, 100);
        address spender = makeAddr("spender");
        bytes32 typehash =
            keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                t.DOMAIN_SEPARATOR(),
                keccak256(abi.encode(typehash, owner, spender, 40, 0, block.timestamp))
            )
        );
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        t.permit(owner, spender, 40, block.timestamp, v, r, s);
        assertEq(t.allowance(owner, spender), 40);
        assertEq(t.nonces(owner), 1);
        vm.prank(spender);
        t.transferFrom(owner, spender, 40);
        assertEq(t.balanceOf(spender), 40);
    }
}
