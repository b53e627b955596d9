// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title BIG
/// @notice The BigFile token: a plain fixed-supply ERC-20 (18 decimals) with EIP-2612 permit.
/// The whole supply is minted once, to `holder`, in the constructor; there is no mint role, no
/// burn and no owner, so the supply can never change. A devnet deployer passes its own address
/// and hands BIG out to test accounts by transfers.
/// @dev EIP-712 domain: name "BigFile", version "1", the chain id and this contract's address.
contract BIG is ERC20, ERC20Permit {
    constructor(address holder, uint256 supply) ERC20("BigFile", "BIG") ERC20Permit("BigFile") {
        _mint(holder, supply);
    }
}
