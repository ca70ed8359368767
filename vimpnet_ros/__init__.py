"""vimpnet_ros: ViMP-Net video rain-streak and raindrop removal for ROS 2.

The node's messages (``RainStatus``) are the separate interface package ``vimpnet_msgs``.
"""

__version__ = "0.1.0"
