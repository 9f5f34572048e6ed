// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @dev The writer half of the Chainlink / Linea L2 sequencer uptime feed
///      (implemented by SequencerUptimeFeed.sol). `status == true` means the sequencer is DOWN.
interface ISequencerUptimeFeedWriter {
    function updateStatus(bool status, uint64 timestamp) external;
}

/// @title UptimeReporter
/// @notice Reports a whole sequencer outage (down round + up round) to an uptime feed in one
///         transaction.
/// @dev Setup:
///      - the feed's admin grants the feed's FEED_UPDATER_ROLE to this contract (the feed only
///        sees this contract as `msg.sender`, so it is this contract that needs the role);
///      - this contract's `admin` allows the supervisor's signer with `setReporter(signer, true)`.
///
///      `report(downTimestamp)` then calls, in one transaction,
///        feed.updateStatus(true,  downTimestamp)           -> round "down", startedAt = downTimestamp
///        feed.updateStatus(false, uint64(block.timestamp)) -> round "up",   startedAt = block.timestamp
///      The up timestamp is the including block's own timestamp, so it can never be later than
///      that block (readers such as Aave compute `block.timestamp - startedAt`), and the two
///      rounds can never be split across blocks or reordered. `downTimestamp` must be strictly
///      earlier than the including block. The feed's own rules still apply to each call
///      (an older timestamp is ignored, an unchanged status only refreshes updatedAt); any revert
///      in the feed (e.g. this contract lacks FEED_UPDATER_ROLE) reverts the whole report with
///      the feed's revert data.
///
///      `feed` and `admin` are immutable: to change either, deploy a new reporter.
contract UptimeReporter {
    /// @notice The uptime feed this contract writes to.
    address public immutable feed;

    /// @notice The only account that may call `setReporter`.
    address public immutable admin;

    /// @notice Accounts allowed to call `report`.
    mapping(address => bool) public isReporter;

    /// @notice `admin` set `account`'s permission to call `report` to `allowed`.
    event ReporterSet(address account, bool allowed);

    /// @notice An outage from `downTimestamp` to `upTimestamp` (the including block's
    ///         timestamp) was written to the feed.
    event OutageReported(uint64 downTimestamp, uint64 upTimestamp);

    /// @notice The caller of `setReporter` is not `admin`.
    error NotAdmin();

    /// @notice The caller of `report` is not an allowed reporter.
    error NotReporter();

    /// @notice `downTimestamp` is not earlier than the including block's timestamp.
    error BadTimestamp();

    /// @notice A zero address was passed to the constructor.
    error ZeroAddressNotAllowed();

    /// @param feed_ The uptime feed (must grant FEED_UPDATER_ROLE to this contract).
    /// @param admin_ The account that manages reporters.
    constructor(address feed_, address admin_) {
        if (feed_ == address(0) || admin_ == address(0)) revert ZeroAddressNotAllowed();
        feed = feed_;
        admin = admin_;
    }

    /// @notice Allow or disallow `account` to call `report`. Only `admin`.
    function setReporter(address account, bool allowed) external {
        if (msg.sender != admin) revert NotAdmin();
        isReporter[account] = allowed;
        emit ReporterSet(account, allowed);
    }

    /// @notice Report an outage that began at `downTimestamp` and ended at this block.
    ///         Only allowed reporters.
    /// @param downTimestamp Time the sequencer went down; must be < block.timestamp.
    function report(uint64 downTimestamp) external {
        if (!isReporter[msg.sender]) revert NotReporter();
        if (downTimestamp >= block.timestamp) revert BadTimestamp();
        uint64 upTimestamp = uint64(block.timestamp);
        ISequencerUptimeFeedWriter(feed).updateStatus(true, downTimestamp);
        ISequencerUptimeFeedWriter(feed).updateStatus(false, upTimestamp);
        emit OutageReported(downTimestamp, upTimestamp);
    }
}
