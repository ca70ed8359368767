"""vimpnet_ros: ViMP-Net video rain-streak and raindrop removal for ROS 2.

The generated message module (``vimpnet_ros.msg``) is installed by CMake into the
site-packages of the environment, while this package may be installed elsewhere
(an editable install, a colcon ``install/`` tree). ``extend_path`` lets Python
find both halves under one package name.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
