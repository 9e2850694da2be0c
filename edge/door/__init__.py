"""Door output: the relay that releases the lock, the door contact and the request-to-exit button."""

from edge.door.base import DoorController, DoorEvent, DoorLines, DoorOutput, open_door
from edge.door.sim import SimLines

__all__ = ["DoorController", "DoorEvent", "DoorLines", "DoorOutput", "SimLines", "open_door"]
