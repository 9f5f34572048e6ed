// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title SequencerUptimeFeed
/// @notice L2 sequencer uptime status feed with an AggregatorV3-style read interface.
/// @dev Answer semantics: `1` = sequencer DOWN, `0` = sequencer UP. `updateStatus(true, t)`
///      therefore reports "the sequencer went down at time t" and `updateStatus(false, t)`
///      reports "the sequencer came back up at time t".
///
///      Rounds:
///      - Round 1 is recorded by the constructor: answer = initialStatus ? 1 : 0,
///        startedAt = updatedAt = block.timestamp. Like Chainlink's feeds, the constructor
///        emits `NewRound(1, deployer, block.timestamp)` and
///        `AnswerUpdated(answer, 1, block.timestamp)`.
///      - `updateStatus(status, timestamp)`:
///          * timestamp < latest round's startedAt -> `UpdateIgnored`, nothing changes;
///          * status equal to the latest round's    -> latest round's updatedAt = block.timestamp,
///                                                    `RoundUpdated`, no new round;
///          * otherwise                              -> new round id + 1 with startedAt = timestamp
///                                                    (caller supplied), updatedAt = block.timestamp,
///                                                    `NewRound` + `AnswerUpdated`.
///
///      Access control is a deliberately small, self-contained subset of OpenZeppelin's
///      AccessControl (same role ids, function signatures, events and errors): every role is
///      administered by DEFAULT_ADMIN_ROLE.
contract SequencerUptimeFeed {
    // ---------------------------------------------------------------------
    // Types and storage
    // ---------------------------------------------------------------------

    /// @dev One recorded round. Packs into a single storage slot.
    struct Round {
        bool status; // true = down
        uint64 startedAt; // caller-supplied time the status began
        uint64 updatedAt; // block.timestamp of the last write to this round
    }

    /// @dev Copy of the latest round plus its id, so reads and writes touch one slot.
    struct FeedState {
        uint80 latestRoundId;
        bool latestStatus;
        uint64 startedAt;
        uint64 updatedAt;
    }

    /// @notice Role id of the administrator (may grant and revoke every role).
    bytes32 public constant DEFAULT_ADMIN_ROLE = 0x00;

    /// @notice Role id allowed to call `updateStatus`.
    /// @dev keccak256("FEED_UPDATER_ROLE") =
    ///      0x2a5eaae4dcc5567b2220ea5152021b46b5fb6cffc0f3a2f4eeb192fcd2fde452
    bytes32 public constant FEED_UPDATER_ROLE = keccak256("FEED_UPDATER_ROLE");

    /// @dev role => account => granted
    mapping(bytes32 => mapping(address => bool)) private s_roles;

    /// @dev roundId => round
    mapping(uint80 => Round) private s_rounds;

    FeedState private s_feedState;

    // ---------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------

    /// @notice A round's answer was set. `updatedAt` carries the round's startedAt
    ///         (the caller-supplied timestamp), as in Chainlink's uptime feeds.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);

    /// @notice A new round was started by `startedBy` at `startedAt` (caller-supplied time).
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    /// @notice The latest round was confirmed with an unchanged status at `updatedAt`
    ///         (block.timestamp).
    event RoundUpdated(int256 status, uint64 updatedAt);

    /// @notice An update older than the latest round's startedAt was dropped.
    event UpdateIgnored(bool latestStatus, uint64 latestTimestamp, bool incomingStatus, uint64 incomingTimestamp);

    /// @notice `account` was granted `role` by `sender` (OpenZeppelin form).
    event RoleGranted(bytes32 indexed role, address indexed account, address indexed sender);

    /// @notice `account` lost `role`; `sender` is the admin or the account itself (OpenZeppelin form).
    event RoleRevoked(bytes32 indexed role, address indexed account, address indexed sender);

    // ---------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------

    /// @notice The caller of `updateStatus` does not hold FEED_UPDATER_ROLE.
    error InvalidSender();

    /// @notice The requested round does not exist.
    error NoDataPresent();

    /// @notice A zero address was passed to the constructor.
    error ZeroAddressNotAllowed();

    /// @notice `account` lacks `neededRole` (OpenZeppelin form).
    error AccessControlUnauthorizedAccount(address account, bytes32 neededRole);

    /// @notice `renounceRole` was called for an account other than the caller (OpenZeppelin form).
    error AccessControlBadConfirmation();

    // ---------------------------------------------------------------------
    // Construction
    // ---------------------------------------------------------------------

    /// @param initialStatus Status of round 1 (true = sequencer down).
    /// @param admin Receives DEFAULT_ADMIN_ROLE.
    /// @param feedUpdater Receives FEED_UPDATER_ROLE.
    constructor(bool initialStatus, address admin, address feedUpdater) {
        if (admin == address(0) || feedUpdater == address(0)) revert ZeroAddressNotAllowed();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(FEED_UPDATER_ROLE, feedUpdater);
        _recordRound(1, initialStatus, uint64(block.timestamp));
    }

    // ---------------------------------------------------------------------
    // Writer
    // ---------------------------------------------------------------------

    /// @notice Report the sequencer status. Selector 0xed8378f5.
    /// @param status true = sequencer down, false = sequencer up.
    /// @param timestamp Time the reported status began (becomes the new round's startedAt).
    function updateStatus(bool status, uint64 timestamp) external {
        if (!s_roles[FEED_UPDATER_ROLE][msg.sender]) revert InvalidSender();

        FeedState memory feedState = s_feedState;

        if (timestamp < feedState.startedAt) {
            emit UpdateIgnored(feedState.latestStatus, feedState.startedAt, status, timestamp);
            return;
        }

        if (feedState.latestStatus == status) {
            _refreshRound(feedState.latestRoundId, status);
        } else {
            _recordRound(feedState.latestRoundId + 1, status, timestamp);
        }
    }

    // ---------------------------------------------------------------------
    // AggregatorV3Interface
    // ---------------------------------------------------------------------

    /// @notice Number of decimals of the answer (always 0: the answer is 0 or 1).
    function decimals() external pure returns (uint8) {
        return 0;
    }

    /// @notice Human-readable description of the feed.
    function description() external pure returns (string memory) {
        return "L2 Sequencer Uptime Status Feed";
    }

    /// @notice Version of this contract's interface.
    function version() external pure returns (uint256) {
        return 1;
    }

    /// @notice Data of round `_roundId`; reverts with `NoDataPresent` for an unknown round.
    /// @return roundId The requested round id.
    /// @return answer 1 = sequencer down, 0 = up.
    /// @return startedAt Caller-supplied time the status began.
    /// @return updatedAt block.timestamp of the last write to the round.
    /// @return answeredInRound Equal to roundId.
    function getRoundData(uint80 _roundId)
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        if (!_isValidRound(_roundId)) revert NoDataPresent();
        Round memory round = s_rounds[_roundId];
        return (_roundId, _answer(round.status), round.startedAt, round.updatedAt, _roundId);
    }

    /// @notice Data of the latest round. Selector 0xfeaf968c.
    /// @return roundId The latest round id.
    /// @return answer 1 = sequencer down, 0 = up.
    /// @return startedAt Caller-supplied time the status began.
    /// @return updatedAt block.timestamp of the last write to the round.
    /// @return answeredInRound Equal to roundId.
    function latestRoundData()
        external
        view
        returns (uint80 roundId, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredInRound)
    {
        FeedState memory feedState = s_feedState;
        return (
            feedState.latestRoundId,
            _answer(feedState.latestStatus),
            feedState.startedAt,
            feedState.updatedAt,
            feedState.latestRoundId
        );
    }

    // ---------------------------------------------------------------------
    // AggregatorInterface (legacy reads)
    // ---------------------------------------------------------------------

    /// @notice Answer of the latest round.
    function latestAnswer() external view returns (int256) {
        return _answer(s_feedState.latestStatus);
    }

    /// @notice startedAt of the latest round.
    function latestTimestamp() external view returns (uint256) {
        return s_feedState.startedAt;
    }

    /// @notice Id of the latest round.
    function latestRound() external view returns (uint256) {
        return s_feedState.latestRoundId;
    }

    /// @notice Answer of round `roundId`; reverts with `NoDataPresent` for an unknown round.
    function getAnswer(uint256 roundId) external view returns (int256) {
        if (!_isValidRound(roundId)) revert NoDataPresent();
        return _answer(s_rounds[uint80(roundId)].status);
    }

    /// @notice startedAt of round `roundId`; reverts with `NoDataPresent` for an unknown round.
    function getTimestamp(uint256 roundId) external view returns (uint256) {
        if (!_isValidRound(roundId)) revert NoDataPresent();
        return s_rounds[uint80(roundId)].startedAt;
    }

    // ---------------------------------------------------------------------
    // Access control
    // ---------------------------------------------------------------------

    /// @notice Whether `account` holds `role`.
    function hasRole(bytes32 role, address account) public view returns (bool) {
        return s_roles[role][account];
    }

    /// @notice Admin role of `role` (always DEFAULT_ADMIN_ROLE).
    function getRoleAdmin(bytes32) external pure returns (bytes32) {
        return DEFAULT_ADMIN_ROLE;
    }

    /// @notice Grant `role` to `account`. Only DEFAULT_ADMIN_ROLE holders.
    function grantRole(bytes32 role, address account) external {
        _checkAdmin();
        _grantRole(role, account);
    }

    /// @notice Revoke `role` from `account`. Only DEFAULT_ADMIN_ROLE holders.
    function revokeRole(bytes32 role, address account) external {
        _checkAdmin();
        _revokeRole(role, account);
    }

    /// @notice Give up `role`. `callerConfirmation` must equal msg.sender.
    function renounceRole(bytes32 role, address callerConfirmation) external {
        if (callerConfirmation != msg.sender) revert AccessControlBadConfirmation();
        _revokeRole(role, callerConfirmation);
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    function _checkAdmin() private view {
        if (!s_roles[DEFAULT_ADMIN_ROLE][msg.sender]) {
            revert AccessControlUnauthorizedAccount(msg.sender, DEFAULT_ADMIN_ROLE);
        }
    }

    function _grantRole(bytes32 role, address account) private {
        if (!s_roles[role][account]) {
            s_roles[role][account] = true;
            emit RoleGranted(role, account, msg.sender);
        }
    }

    function _revokeRole(bytes32 role, address account) private {
        if (s_roles[role][account]) {
            s_roles[role][account] = false;
            emit RoleRevoked(role, account, msg.sender);
        }
    }

    /// @dev Starts round `roundId` with `status` beginning at `timestamp`.
    function _recordRound(uint80 roundId, bool status, uint64 timestamp) private {
        uint64 nowTs = uint64(block.timestamp);
        s_rounds[roundId] = Round(status, timestamp, nowTs);
        s_feedState = FeedState(roundId, status, timestamp, nowTs);
        emit NewRound(roundId, msg.sender, timestamp);
        emit AnswerUpdated(_answer(status), roundId, timestamp);
    }

    /// @dev Confirms the latest round's unchanged status: only updatedAt moves.
    function _refreshRound(uint80 roundId, bool status) private {
        uint64 nowTs = uint64(block.timestamp);
        s_feedState.updatedAt = nowTs;
        s_rounds[roundId].updatedAt = nowTs;
        emit RoundUpdated(_answer(status), nowTs);
    }

    function _isValidRound(uint256 roundId) private view returns (bool) {
        return roundId > 0 && roundId <= s_feedState.latestRoundId;
    }

    function _answer(bool status) private pure returns (int256) {
        return status ? int256(1) : int256(0);
    }
}
