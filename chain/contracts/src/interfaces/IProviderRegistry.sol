// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title IProviderRegistry
/// @notice Providers bind their chain address to a libp2p peer id and bond a BIG stake. Markets that
/// the owner authorised may slash that stake and hold "commitments" that keep it bonded.
interface IProviderRegistry {
    /// A provider registered with `peerId` (libp2p PeerId bytes) and bonded `stake`.
    event ProviderRegistered(address indexed provider, bytes peerId, uint256 stake);
    /// A provider changed its peer id.
    event PeerIdChanged(address indexed provider, bytes peerId);
    /// `amount` was added to the bonded stake, which is now `stake`.
    event StakeAdded(address indexed provider, uint256 amount, uint256 stake);
    /// `amount` left the bonded stake; `unbonding` (all pending) can be withdrawn from `readyBlock`.
    event UnbondRequested(address indexed provider, uint256 amount, uint256 unbonding, uint256 readyBlock);
    /// The unbonded `amount` was paid back to the provider.
    event Withdrawn(address indexed provider, uint256 amount);
    /// `market` slashed `amount` of the provider's stake and sent it to `beneficiary`.
    event Slashed(address indexed provider, address indexed market, uint256 amount, address beneficiary);
    /// The owner authorised (or de-authorised) `market` to slash and to add commitments.
    event MarketAuthorised(address indexed market, bool authorised);
    /// `market` now holds `commitments` open engagements (e.g. storage slots) of the provider.
    event CommitmentsChanged(address indexed provider, address indexed market, uint256 commitments);

    error ZeroAddress();
    error ZeroAmount();
    error InvalidPeerId(uint256 length);
    error AlreadyRegistered(address provider);
    error NotRegistered(address provider);
    error StakeBelowMinimum(uint256 stake, uint256 minimum);
    error InsufficientStake(uint256 requested, uint256 available);
    /// A provider with open commitments must keep at least the minimum bonded.
    error CommittedStakeBelowMinimum(uint256 remaining, uint256 minimum);
    error NothingToWithdraw();
    error UnbondingNotReady(uint256 readyBlock);
    error NotMarket(address caller);
    error NoCommitment(address market, address provider);

    /// The staking token (BIG).
    function token() external view returns (IERC20);
    /// Smallest bonded stake that lets a provider take new work.
    function minStake() external view returns (uint256);
    /// Blocks between `requestUnbond` and the earliest `withdraw`.
    function unbondingBlocks() external view returns (uint256);

    function isRegistered(address provider) external view returns (bool);
    /// Bonded stake (not counting what is unbonding).
    function stakeOf(address provider) external view returns (uint256);
    /// Bonded plus unbonding stake: what a slash can reach.
    function slashableOf(address provider) external view returns (uint256);
    function peerIdOf(address provider) external view returns (bytes memory);
    function unbondingOf(address provider) external view returns (uint256 amount, uint256 readyBlock);
    /// Open commitments across all markets.
    function commitmentsOf(address provider) external view returns (uint256);
    /// Registered with at least `minStake` bonded: may take new work.
    function canServe(address provider) external view returns (bool);
    function isMarket(address market) external view returns (bool);

    /// Takes up to `amount` (bonded first, then unbonding) and sends it to `beneficiary`; returns
    /// the amount actually slashed. Only authorised markets.
    function slash(address provider, uint256 amount, address beneficiary) external returns (uint256 slashed);
    /// Records one more open commitment of `provider` with the calling market. Only authorised markets.
    function addCommitment(address provider) external;
    /// Ends one commitment that the calling market holds (allowed even after de-authorisation).
    function removeCommitment(address provider) external;
}
