"""OSDP (IEC 60839-11-5): the terminal as a reader (a peripheral device, PD) under the site's panel.

The protocol itself is libosdp's (the ``libosdp`` package: C core, Python bindings); nothing here
encodes or decodes an OSDP packet. The modules:

* ``carddata``: a panel credential as the bits a card reader sends (pure).
* ``commands``: the panel's LED, buzzer and output commands as typed values, and the LED and output
  programs they describe, evaluated against a clock (pure).
* ``channel``: the serial port (pyserial URL) libosdp reads and writes; it never raises into C.
* ``scbk``: the Secure Channel base key file (0600, never logged).
* ``pd``: ``OsdpPeripheral``, the PD: a thread around libosdp that reports card reads and hands the
  panel's commands to callbacks.
* ``panel``: ``SimPanel``, a control panel (libosdp in CP mode) over a real pty for tests, the demo and
  the benchmark; ``edge.testing.osdp_peer`` plays the panel with the independent ``osdp`` package.

Importing this package does not import libosdp: ``--help`` stays instant and a terminal without the
package still runs in relay mode.
"""
