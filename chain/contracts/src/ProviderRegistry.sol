// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";

/// @title ProviderRegistry
/// @notice Binds a provider's chain address to its libp2p peer id and holds its BIG stake.
///
/// Stake is bonded at registration (at least `minStake`) and topped up with `addStake`. Leaving
/// is two steps: `requestUnbond(amount)` moves stake out of the bonded balance into a single
/// unbonding balance whose timer restarts at `block.number + unbondingBlocks`; `withdraw` pays it
/// out once that block is reached. Unbonding stake stays slashable until withdrawn, and while a
/// provider has open commitments (slots held in a market) it cannot unbond below `minStake`.
///
/// Only markets the owner authorised can `slash` and `addCommitment`; a market can always end the
/// commitments it holds, even after the owner de-authorised it, so providers are never stuck.
contract ProviderRegistry is IProviderRegistry, Ownable2Step {
    using SafeERC20 for IERC20;

    /// Longest peer id accepted (a libp2p PeerId is a multihash: 38 bytes for ed25519 keys).
    uint256 public constant MAX_PEER_ID_LENGTH = 64;

    struct Provider {
        uint128 stake;
        uint128 unbonding;
        uint64 unbondReadyBlock;
        uint32 commitments;
        bool registered;
        bytes peerId;
    }

    /// @inheritdoc IProviderRegistry
    IERC20 public immutable token;
    /// @inheritdoc IProviderRegistry
    uint256 public immutable minStake;
    /// @inheritdoc IProviderRegistry
    uint256 public immutable unbondingBlocks;

    /// @inheritdoc IProviderRegistry
    mapping(address market => bool) public isMarket;
    /// Open commitments per market and provider.
    mapping(address market => mapping(address provider => uint256)) public commitmentsBy;
    /// Bonded plus unbonding stake of all providers: always this contract's BIG balance.
    uint256 public totalStake;

    mapping(address provider => Provider) private _providers;

    constructor(IERC20 token_, uint256 minStake_, uint256 unbondingBlocks_, address owner_) Ownable(owner_) {
        if (address(token_) == address(0)) revert ZeroAddress();
        if (minStake_ == 0) revert ZeroAmount();
        token = token_;
        minStake = minStake_;
        unbondingBlocks = unbondingBlocks_;
    }

    modifier onlyMarket() {
        if (!isMarket[msg.sender]) revert NotMarket(msg.sender);
        _;
    }

    // ---------------------------------------------------------------------------------------------
    // Providers

    /// Registers the caller with `peerId` and bonds `stake` BIG (approved beforehand).
    function register(bytes calldata peerId, uint256 stake) external {
        _register(peerId, stake);
    }

    /// `register` with an EIP-2612 permit for `stake` instead of a prior approval. A permit that
    /// fails (e.g. someone already used it) is ignored; the transfer then needs an allowance.
    function registerWithPermit(bytes calldata peerId, uint256 stake, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), stake, deadline, v, r, s) {} catch {}
        _register(peerId, stake);
    }

    /// Replaces the caller's peer id.
    function setPeerId(bytes calldata peerId) external {
        Provider storage p = _registered(msg.sender);
        _checkPeerId(peerId);
        p.peerId = peerId;
        emit PeerIdChanged(msg.sender, peerId);
    }

    /// Adds `amount` BIG (approved beforehand) to the caller's bonded stake.
    function addStake(uint256 amount) external {
        Provider storage p = _registered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        uint256 stake = p.stake + amount;
        p.stake = SafeCast.toUint128(stake);
        totalStake += amount;
        emit StakeAdded(msg.sender, amount, stake);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// Moves `amount` of bonded stake to unbonding and restarts the unbonding timer.
    function requestUnbond(uint256 amount) external {
        Provider storage p = _registered(msg.sender);
        if (amount == 0) revert ZeroAmount();
        uint256 stake = p.stake;
        if (amount > stake) revert InsufficientStake(amount, stake);
        uint256 remaining = stake - amount;
        if (p.commitments != 0 && remaining < minStake) revert CommittedStakeBelowMinimum(remaining, minStake);
        uint256 unbonding = p.unbonding + amount;
        uint256 readyBlock = block.number + unbondingBlocks;
        // forge-lint: disable-next-line(unsafe-typecast) remaining <= the uint128 stake
        p.stake = uint128(remaining);
        p.unbonding = SafeCast.toUint128(unbonding);
        p.unbondReadyBlock = SafeCast.toUint64(readyBlock);
        emit UnbondRequested(msg.sender, amount, unbonding, readyBlock);
    }

    /// Pays out the caller's whole unbonding balance once its ready block is reached.
    function withdraw() external returns (uint256 amount) {
        Provider storage p = _registered(msg.sender);
        amount = p.unbonding;
        if (amount == 0) revert NothingToWithdraw();
        if (block.number < p.unbondReadyBlock) revert UnbondingNotReady(p.unbondReadyBlock);
        p.unbonding = 0;
        p.unbondReadyBlock = 0;
        totalStake -= amount;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------------------------------------
    // Markets

    /// @inheritdoc IProviderRegistry
    function slash(address provider, uint256 amount, address beneficiary)
        external
        onlyMarket
        returns (uint256 slashed)
    {
        if (beneficiary == address(0)) revert ZeroAddress();
        Provider storage p = _providers[provider];
        uint256 stake = p.stake;
        uint256 unbonding = p.unbonding;
        uint256 fromStake = amount < stake ? amount : stake;
        uint256 rest = amount - fromStake;
        uint256 fromUnbonding = rest < unbonding ? rest : unbonding;
        slashed = fromStake + fromUnbonding;
        if (slashed == 0) return 0;
        // forge-lint: disable-start(unsafe-typecast) both only shrink from uint128 values
        p.stake = uint128(stake - fromStake);
        p.unbonding = uint128(unbonding - fromUnbonding);
        // forge-lint: disable-end(unsafe-typecast)
        totalStake -= slashed;
        emit Slashed(provider, msg.sender, slashed, beneficiary);
        token.safeTransfer(beneficiary, slashed);
    }

    /// @inheritdoc IProviderRegistry
    function addCommitment(address provider) external onlyMarket {
        Provider storage p = _registered(provider);
        p.commitments += 1;
        uint256 n = ++commitmentsBy[msg.sender][provider];
        emit CommitmentsChanged(provider, msg.sender, n);
    }

    /// @inheritdoc IProviderRegistry
    function removeCommitment(address provider) external {
        uint256 n = commitmentsBy[msg.sender][provider];
        if (n == 0) revert NoCommitment(msg.sender, provider);
        commitmentsBy[msg.sender][provider] = n - 1;
        _providers[provider].commitments -= 1;
        emit CommitmentsChanged(provider, msg.sender, n - 1);
    }

    // ---------------------------------------------------------------------------------------------
    // Owner

    /// Authorises `market` (a StorageMarket, later a ComputeMarket) to slash and add commitments.
    function setMarket(address market, bool authorised) external onlyOwner {
        if (market == address(0)) revert ZeroAddress();
        isMarket[market] = authorised;
        emit MarketAuthorised(market, authorised);
    }

    // ---------------------------------------------------------------------------------------------
    // Views

    /// @inheritdoc IProviderRegistry
    function isRegistered(address provider) external view returns (bool) {
        return _providers[provider].registered;
    }

    /// @inheritdoc IProviderRegistry
    function stakeOf(address provider) external view returns (uint256) {
        return _providers[provider].stake;
    }

    /// @inheritdoc IProviderRegistry
    function slashableOf(address provider) external view returns (uint256) {
        Provider storage p = _providers[provider];
        return uint256(p.stake) + p.unbonding;
    }

    /// @inheritdoc IProviderRegistry
    function peerIdOf(address provider) external view returns (bytes memory) {
        return _providers[provider].peerId;
    }

    /// @inheritdoc IProviderRegistry
    function unbondingOf(address provider) external view returns (uint256 amount, uint256 readyBlock) {
        Provider storage p = _providers[provider];
        return (p.unbonding, p.unbondReadyBlock);
    }

    /// @inheritdoc IProviderRegistry
    function commitmentsOf(address provider) external view returns (uint256) {
        return _providers[provider].commitments;
    }

    /// @inheritdoc IProviderRegistry
    function canServe(address provider) external view returns (bool) {
        Provider storage p = _providers[provider];
        return p.registered && p.stake >= minStake;
    }

    // ---------------------------------------------------------------------------------------------
    // Internals

    function _register(bytes calldata peerId, uint256 stake) private {
        Provider storage p = _providers[msg.sender];
        if (p.registered) revert AlreadyRegistered(msg.sender);
        _checkPeerId(peerId);
        if (stake < minStake) revert StakeBelowMinimum(stake, minStake);
        p.registered = true;
        p.peerId = peerId;
        p.stake = SafeCast.toUint128(stake);
        totalStake += stake;
        emit ProviderRegistered(msg.sender, peerId, stake);
        token.safeTransferFrom(msg.sender, address(this), stake);
    }

    function _registered(address provider) private view returns (Provider storage p) {
        p = _providers[provider];
        if (!p.registered) revert NotRegistered(provider);
    }

    function _checkPeerId(bytes calldata peerId) private pure {
        if (peerId.length == 0 || peerId.length > MAX_PEER_ID_LENGTH) revert InvalidPeerId(peerId.length);
    }
}
