"""The rclpy node: camera topics in, derained images, raindrop masks and rain status out.

The processing is the ROS-free :mod:`vimpnet_ros.pipeline` (shared with bag evaluation);
this package binds it to rclpy, one concern per module:

- :mod:`.node`: the node itself (plain or lifecycle): transitions create what they own;
- :mod:`.ros_params`: the parameter table declared on the node, validated updates;
- :mod:`.camera_io`: one camera's publishers, subscriptions and camera_info;
- :mod:`.messages`: pipeline outputs -> rclpy messages;
- :mod:`.scheduler`: latest-wins pending frames and the inference worker thread;
- :mod:`.diagnostics`: rates, latency percentiles and ``/diagnostics`` status;
- :mod:`.qos`: QoS profiles; :mod:`.main`: the executable.
"""
