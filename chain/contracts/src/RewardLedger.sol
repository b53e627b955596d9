// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IRewardLedger} from "./interfaces/IRewardLedger.sol";

/// @title RewardLedger
/// @notice The reward half of a market (storage now, compute later): the market credits BIG that a
/// provider earned out of its own escrow, the provider pulls it with `claimRewards`. The credited
/// BIG stays in the market's balance until claimed, so for every market
/// `BIG.balanceOf(market) == escrow held for clients + sum of claimable`.
/// @dev Each account keeps two lifetime totals, `earned` and `claimed`, in one storage word. They
/// only grow, so after an account's first credit the word is never zero again: later credits are
/// a nonzero-to-nonzero write (2,900 gas warm) instead of the 20,000 gas a zeroed balance costs.
abstract contract RewardLedger is IRewardLedger {
    using SafeERC20 for IERC20;

    struct Account {
        uint128 earned;
        uint128 claimed;
    }

    /// BIG, the token rewards are paid in.
    IERC20 public immutable token;

    mapping(address provider => Account) private _accounts;

    constructor(IERC20 token_) {
        token = token_;
    }

    /// @inheritdoc IRewardLedger
    function claimable(address provider) public view returns (uint256) {
        Account memory a = _accounts[provider];
        return a.earned - a.claimed;
    }

    /// @inheritdoc IRewardLedger
    function earned(address provider) external view returns (uint256) {
        return _accounts[provider].earned;
    }

    /// @inheritdoc IRewardLedger
    function claimRewards() external returns (uint256 amount) {
        Account storage a = _accounts[msg.sender];
        uint128 e = a.earned;
        amount = e - a.claimed;
        if (amount == 0) revert NothingToClaim();
        a.claimed = e;
        emit RewardsClaimed(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    /// Credits `amount` BIG (already held by this contract) to `provider`.
    function _credit(address provider, uint256 amount) internal {
        Account storage a = _accounts[provider];
        a.earned += SafeCast.toUint128(amount);
    }
}
