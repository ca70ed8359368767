"""The rclpy node: camera topics in, derained images, raindrop masks and rain status out.

Submodules are split by concern so the parts that need no DDS (the parameter
table, image conversion, latest-wins scheduling, rain gating, diagnostics
statistics) can be used and tested without a running ROS graph:

- :mod:`.parameters`: the parameter table as data, validation, engine config.
- :mod:`.qos`: QoS profiles from validated strings.
- :mod:`.conversion`: ``sensor_msgs`` images <-> numpy arrays.
- :mod:`.scheduler`: per-camera pending frames and the inference worker thread.
- :mod:`.gating`: rain gating (pass frames through when it does not rain).
- :mod:`.diagnostics`: rates, latency percentiles and ``/diagnostics`` status.
- :mod:`.node`: the node itself (plain or lifecycle), :mod:`.main`: the executable.
"""
