"""QoS of the node's topics: profiles from validated strings, adaptive input reliability, QoS overriding options.

Inputs default to ``auto`` reliability, chosen the way rosbag2 records: once a camera
publishes, the subscription is reliable if every publisher on the topic offers reliable
and best effort otherwise (a best-effort subscription matches both). A reliable
subscription to a reliable camera gets lost fragments of large frames sent again; a
best-effort one loses the whole frame (docs/node.md "Camera-sized frames and the DDS
transport"). Stale frames are never asked for again either way (keep-last, volatile).
Outputs default to reliable so that recorders and detectors that ask for reliable match.

Every input subscription and output publisher also takes ROS 2's QoS overriding options
(rclpy ``QoSOverridingOptions``; design article "ROS 2 QoS configurability"):
``qos_overrides./<topic>.subscription.reliability``, ``.depth``, ``.history``, and
``.publisher.`` for outputs: the node's ``input_*``/``output_*`` parameters give the
defaults for all cameras, a per-topic override wins. ``auto`` decides once, when the
subscription is created; an explicit override of its reliability is applied by rclpy at
that moment, so the override always wins.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from rclpy.event_handler import (
    PublisherEventCallbacks,
    QoSMessageLostInfo,
    QoSOfferedIncompatibleQoSInfo,
    QoSRequestedIncompatibleQoSInfo,
    SubscriptionEventCallbacks,
    UnsupportedEventTypeError,
)
from rclpy.exceptions import ParameterException
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_policy_name_from_kind,
    qos_profile_sensor_data,
)
from rclpy.qos_overriding_options import InvalidQosOverridesError, QosCallbackResult, QoSOverridingOptions

from vimpnet_ros.errors import ConfigError
from vimpnet_ros.pipeline.settings import AUTO_RELIABILITY, INPUT_RELIABILITIES, RELIABILITIES

_RELIABILITY: dict[str, ReliabilityPolicy] = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
    "system_default": ReliabilityPolicy.SYSTEM_DEFAULT,
}
assert set(_RELIABILITY) == set(RELIABILITIES)

#: QoS of /diagnostics, as diagnostic_updater uses it (reliable, keep last 10).
DIAGNOSTICS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST)
#: Requests ``~/set_enabled`` holds until the executor serves them (ROS' default is 10): a burst of up to this
#: many calls sent without waiting is answered in full; beyond it the middleware drops the oldest requests
#: (their callers wait in vain), and the state is that of the last request served.
SERVICE_QUEUE_DEPTH = 100
SERVICE_QOS = QoSProfile(
    depth=SERVICE_QUEUE_DEPTH, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
)
#: What a user sees when frames are lost in transport (the docs page to read).
LOSS_HINT = (
    "frames larger than the publisher's shared-memory segment (512 KiB by default) are lost by best-effort "
    "subscriptions; see docs/node.md, 'Camera-sized frames and the DDS transport'"
)

Report = Callable[[str], None]
T = TypeVar("T")


def make_qos(reliability: str, depth: int) -> QoSProfile:
    """A keep-last, volatile profile with the given reliability name and depth."""
    if reliability not in _RELIABILITY:
        raise ConfigError(f"QoS reliability must be one of {', '.join(RELIABILITIES)}; got '{reliability}'")
    if depth < 1:
        raise ConfigError(f"QoS depth must be >= 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=_RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def sensor_data_qos(depth: int | None = None) -> QoSProfile:
    """rclpy's sensor-data profile, optionally with another depth."""
    if depth is None:
        return qos_profile_sensor_data
    return make_qos("best_effort", depth)


def adapt_reliability(offered: Iterable[QoSProfile]) -> str | None:
    """rosbag2's rule for the publishers' offered profiles: ``reliable`` if all offer it, else ``best_effort``.

    None when there is no publisher yet (nothing to adapt to).
    """
    kinds = [profile.reliability for profile in offered]
    if not kinds:
        return None
    return "reliable" if all(kind == ReliabilityPolicy.RELIABLE for kind in kinds) else "best_effort"


def _validate_override(qos: QoSProfile) -> QosCallbackResult:
    """Refuse overrides that would make a keep-last history hold nothing."""
    result = QosCallbackResult(successful=True)
    if qos.history == HistoryPolicy.KEEP_LAST and qos.depth < 1:
        result.successful = False
        result.reason = f"a keep_last history needs depth >= 1, got {qos.depth}"
    return result


def qos_overrides() -> QoSOverridingOptions:
    """Overrides of history, depth and reliability, validated (pass to create_subscription/publisher)."""
    return QoSOverridingOptions.with_default_policies(callback=_validate_override)


def with_overrides(create: Callable[[], T], topic: str) -> T:
    """Run ``create`` (a create_subscription/create_publisher call with :func:`qos_overrides`).

    A bad ``qos_overrides.<topic>.*`` parameter becomes a :class:`ConfigError` naming it
    (rclpy raises RuntimeError for an unknown policy value, InvalidQosOverridesError when the
    validation refuses the result and a ParameterException for a wrong type).
    """
    try:
        return create()
    except (InvalidQosOverridesError, ParameterException) as error:
        raise ConfigError(f"invalid qos_overrides.{topic}.* parameter: {error}") from error
    except RuntimeError as error:
        if "QoS override" not in str(error):  # an RMW failure, not a parameter
            raise
        raise ConfigError(f"invalid qos_overrides.{topic}.* parameter: {error}") from error


def output_event_callbacks(topic: str, report: Report) -> PublisherEventCallbacks:
    """Say which override fixes a subscriber whose QoS our publisher cannot serve (e.g. it asks reliable)."""

    def incompatible(event: QoSOfferedIncompatibleQoSInfo) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        report(
            f"a subscriber of {topic} requests QoS this publisher does not offer ({policy}); it receives nothing. "
            f"Set output_reliability or qos_overrides.{topic}.publisher.{policy.lower()}"
        )

    return PublisherEventCallbacks(incompatible_qos=incompatible)


def create_output_publisher(
    create: Callable[..., T], node: Any, msg_type: type, topic: str, reliability: str, depth: int, report: Report
) -> T:
    """One output publisher with QoS overrides and an incompatible-subscriber report.

    ``create`` is ``node.create_publisher`` or ``node.create_lifecycle_publisher``. Each
    publisher gets a profile of its own: rclpy writes the overrides into the profile object
    it is given, so a shared one would carry one topic's override to the next.
    """
    resolved = node.resolve_topic_name(topic)
    return with_overrides(
        lambda: create(
            msg_type,
            topic,
            make_qos(reliability, depth),
            qos_overriding_options=qos_overrides(),
            event_callbacks=output_event_callbacks(resolved, report),
        ),
        resolved,
    )


class InputSubscription:
    """One input topic: subscribed with adapted or fixed reliability, QoS overrides, losses reported.

    The node creates one per input topic at activation and calls :meth:`poll` from a
    timer until it returns True: with ``auto`` the subscription waits for the first
    publisher (rosbag2 style), otherwise it is created at the first poll. ``topic`` is
    resolved (namespace, remapping) here: the publisher lookup and the ``qos_overrides`` parameter
    names use the resolved name.
    """

    def __init__(
        self,
        node: Any,
        msg_type: type,
        topic: str,
        callback: Callable[[Any], None],
        reliability: str,
        depth: int,
        report: Report,
    ) -> None:
        if reliability not in INPUT_RELIABILITIES:
            raise ConfigError(
                f"input QoS reliability must be one of {', '.join(INPUT_RELIABILITIES)}; got '{reliability}'"
            )
        if depth < 1:
            raise ConfigError(f"QoS depth must be >= 1, got {depth}")
        self.node = node
        self.msg_type = msg_type
        self.topic: str = node.resolve_topic_name(topic)
        self.callback = callback
        self.reliability = reliability
        self.depth = depth
        self.report = report
        self.subscription: Any = None
        #: Frames the middleware reported lost (a best-effort reader missing fragments), since creation.
        self.lost = 0
        #: The reliability the subscription was created with (after adaptation and overrides), or None.
        self.effective_reliability: str | None = None
        self.check_overrides()

    def check_overrides(self) -> None:
        """Apply this topic's ``qos_overrides`` parameters to a stand-in profile now; a bad one is a ConfigError.

        With ``auto`` the subscription itself waits for a publisher; its overrides must not wait
        with it (the node would look healthy, then exit when the camera starts). rclpy validates
        overrides only while it declares them for a new subscription, and declaring them here
        would fix their values before ``auto`` has chosen, so this applies the given ones the way
        rclpy does (its own helpers) without declaring anything.
        """
        from rclpy.qos_overriding_options import _get_allowed_policies, _override_qos_policy_with_param
        from rclpy.subscription import Subscription

        options = qos_overrides()
        stand_in = make_qos("reliable", self.depth)
        given = getattr(self.node, "_parameter_overrides", {})  # the -p / params-file values, declared or not
        for policy in options.policy_kinds:
            if policy not in _get_allowed_policies(Subscription):
                continue
            name = f"qos_overrides.{self.topic}.subscription.{policy.name.lower()}"
            param = self.node.get_parameter(name) if self.node.has_parameter(name) else given.get(name)
            if param is None:
                continue
            try:
                with warnings.catch_warnings():  # rclpy warns of a zero depth; the check below says it in one line
                    warnings.simplefilter("ignore", UserWarning)
                    _override_qos_policy_with_param(stand_in, policy, param)
            except Exception as error:  # an unknown policy value or a wrong type, as rclpy would raise it
                text = f"invalid qos_overrides.{self.topic}.* parameter {name}:={param.value!r}: {error}"
                raise ConfigError(text) from error
        if options.callback is not None:
            result = options.callback(stand_in)
            if not result.successful:
                raise ConfigError(f"invalid qos_overrides.{self.topic}.* parameter: {result.reason}")

    def chosen_reliability(self) -> str | None:
        """The reliability to subscribe with now (None: ``auto`` and no publisher yet)."""
        if self.reliability != AUTO_RELIABILITY:
            return self.reliability
        infos = self.node.get_publishers_info_by_topic(self.topic)
        return adapt_reliability(info.qos_profile for info in infos)

    def poll(self) -> bool:
        """Create the subscription when it can be; True once it exists (ConfigError for a bad override)."""
        if self.subscription is not None:
            return True
        reliability = self.chosen_reliability()
        if reliability is None:
            return False
        qos = make_qos(reliability, self.depth)
        try:
            self.subscription = self._create(qos, with_loss_events=True)
        except UnsupportedEventTypeError:  # an RMW without the message-lost event: still subscribe
            self.subscription = self._create(qos, with_loss_events=False)
        effective = self.subscription.qos_profile.reliability
        self.effective_reliability = effective.name.lower()
        if self.reliability == AUTO_RELIABILITY:
            how = f"input_reliability auto: {reliability} for the publishers present"
            if self.effective_reliability != reliability:
                how += f", overridden by qos_overrides.{self.topic}.subscription.reliability"
            self.node.get_logger().info(f"{self.topic}: {self.effective_reliability} subscription ({how})")
        return True

    def _create(self, qos: QoSProfile, with_loss_events: bool) -> Any:
        events = SubscriptionEventCallbacks(
            incompatible_qos=self._incompatible, message_lost=self._lost if with_loss_events else None
        )
        return with_overrides(
            lambda: self.node.create_subscription(
                self.msg_type,
                self.topic,
                self.callback,
                qos,
                event_callbacks=events,
                qos_overriding_options=qos_overrides(),
            ),
            self.topic,
        )

    def _incompatible(self, event: QoSRequestedIncompatibleQoSInfo) -> None:
        policy = qos_policy_name_from_kind(event.last_policy_kind)
        self.report(
            f"a publisher on {self.topic} offers QoS incompatible with this {self.effective_reliability} subscription "
            f"({policy}); nothing is received from it. Set input_reliability:=best_effort or "
            f"qos_overrides.{self.topic}.subscription.{policy.lower()}"
        )

    def _lost(self, event: QoSMessageLostInfo) -> None:
        self.lost = int(event.total_count)
        self.report(
            f"{event.total_count_change} frame(s) on {self.topic} lost in transport ({self.lost} so far): {LOSS_HINT}"
        )

    def destroy(self) -> None:
        """Unsubscribe (the ``qos_overrides`` parameters stay declared: a later subscription reuses them)."""
        if self.subscription is not None:
            self.node.destroy_subscription(self.subscription)
            self.subscription = None
