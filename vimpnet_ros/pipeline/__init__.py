"""The restoration pipeline between messages and the engine, shared by the node and bag evaluation (no ROS).

- :mod:`.settings`: the node's parameter table (the single source), params files, ``-p`` overrides;
- :mod:`.topics`: camera namespaces and topic names (image_transport style);
- :mod:`.decode`: one decoder for rclpy and rosbags messages, with size limits checked before decoding;
- :mod:`.rain`: the rain estimate and gating;
- :mod:`.outputs`: what is published for one frame (:class:`~.outputs.FrameOutputs`);
- :mod:`.camera`: one camera's pipeline and a worker turn over several cameras.

The node turns :class:`~.outputs.FrameOutputs` into rclpy messages; bag evaluation writes the
same outputs into a bag, so the two cannot disagree.
"""
