// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title IRewardLedger
/// @notice Pull-payment of BIG earned by providers in one market (the storage market now, the
/// compute market later): rewards accrue when work is proven and are claimed in one transfer.
interface IRewardLedger {
    /// `provider` withdrew `amount` BIG of earned rewards.
    event RewardsClaimed(address indexed provider, uint256 amount);

    error NothingToClaim();

    /// BIG earned and not yet claimed.
    function claimable(address provider) external view returns (uint256);
    /// BIG earned over the provider's whole life in this market (claimed or not).
    function earned(address provider) external view returns (uint256);
    /// Sends all of the caller's claimable BIG to the caller; reverts with `NothingToClaim` if none.
    function claimRewards() external returns (uint256 amount);
}
