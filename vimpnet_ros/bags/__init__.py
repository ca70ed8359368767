"""Rosbag tools: reading/writing helpers over ``rosbags``, the sample bag, live replay and recording.

``io``, ``images``, ``typestore`` and ``sample`` need no ROS installation;
``play`` and ``record`` use rclpy and are imported on their own.
"""

from vimpnet_ros.bags.io import BagMessage, BagReader, BagWriter, TopicSummary
from vimpnet_ros.bags.typestore import DISTROS, make_typestore

__all__ = ["DISTROS", "BagMessage", "BagReader", "BagWriter", "TopicSummary", "make_typestore"]
