"""Peer drivers accept edge-fpsim: pyfingerprint 1.5 and adafruit-circuitpython-fingerprint 2.2.25
complete enrol, store, search, load, template download/upload round trip, delete and empty against
``edge-fpsim --model {r307,r503} --finger-always`` started as a separate process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import serial

from edge.fingerprint.sim.process import SimulatorProcess

pytestmark = pytest.mark.timeout(180)

TEMPLATE_SIZE = {"r307": 512, "r503": 1536}
CAPACITY = {"r307": 1000, "r503": 200}


@pytest.fixture(params=["r307", "r503"], scope="module")
def sim(request: pytest.FixtureRequest) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(model=request.param, finger_always=True) as proc:
        proc.model = request.param  # type: ignore[attr-defined]
        yield proc


def test_pyfingerprint_full_workflow(sim: SimulatorProcess, tmp_path) -> None:
    from pyfingerprint.pyfingerprint import FINGERPRINT_CHARBUFFER1, FINGERPRINT_CHARBUFFER2, PyFingerprint

    model = sim.model  # type: ignore[attr-defined]
    f = PyFingerprint(sim.port, 57600, 0xFFFFFFFF, 0x00000000)
    try:
        assert f.verifyPassword()
        assert f.getStorageCapacity() == CAPACITY[model]
        assert f.getMaxPacketSize() == 128
        f.clearDatabase()
        assert f.getTemplateCount() == 0
        # Enrol as pyfingerprint's example does: capture, convert, search for a duplicate, capture
        # again, compare, merge, store at the first free position.
        assert f.readImage()
        f.convertImage(FINGERPRINT_CHARBUFFER1)
        assert f.searchTemplate() == (-1, -1)
        assert f.readImage()
        f.convertImage(FINGERPRINT_CHARBUFFER2)
        assert f.compareCharacteristics() > 0
        f.createTemplate()
        position = f.storeTemplate()
        assert position == 0
        assert f.getTemplateCount() == 1
        assert f.getTemplateIndex(0)[0] is True
        # Search finds it.
        assert f.readImage()
        f.convertImage(FINGERPRINT_CHARBUFFER1)
        found, score = f.searchTemplate()
        assert found == 0
        assert score > 0
        # Load, download, upload (pyfingerprint verifies the upload by downloading again).
        f.loadTemplate(position, FINGERPRINT_CHARBUFFER1)
        characteristics = f.downloadCharacteristics(FINGERPRINT_CHARBUFFER1)
        assert len(characteristics) == TEMPLATE_SIZE[model]
        assert f.uploadCharacteristics(FINGERPRINT_CHARBUFFER2, characteristics)
        assert f.storeTemplate(7, FINGERPRINT_CHARBUFFER2)
        assert f.getTemplateCount() == 2
        if model == "r307":  # pyfingerprint hard-codes the 256x288 image of the R30x
            image = tmp_path / "finger.bmp"
            f.downloadImage(str(image))
            assert image.stat().st_size > 256 * 288
        assert f.deleteTemplate(7)
        assert f.getTemplateCount() == 1
        assert f.clearDatabase()
        assert f.getTemplateCount() == 0
    finally:
        f._PyFingerprint__serial.close()


def test_adafruit_full_workflow(sim: SimulatorProcess) -> None:
    import adafruit_fingerprint as af

    model = sim.model  # type: ignore[attr-defined]
    uart = serial.Serial(sim.port, baudrate=57600, timeout=5)
    try:
        finger = af.Adafruit_Fingerprint(uart)
        assert finger.library_size == CAPACITY[model]
        assert finger.check_module()
        assert finger.empty_library() == af.OK
        assert finger.count_templates() == af.OK
        assert finger.template_count == 0
        # Enrol: two images into slots 1 and 2, merge, store at location 3.
        for slot in (1, 2):
            assert finger.get_image() == af.OK
            assert finger.image_2_tz(slot) == af.OK
        assert finger.create_model() == af.OK
        assert finger.store_model(3, 1) == af.OK
        assert finger.read_templates() == af.OK
        assert finger.templates == [3]
        # Search (both variants) finds it.
        assert finger.get_image() == af.OK
        assert finger.image_2_tz(1) == af.OK
        assert finger.finger_search() == af.OK
        assert finger.finger_id == 3
        assert finger.confidence > 0
        assert finger.finger_fast_search() == af.OK
        assert finger.finger_id == 3
        # Load, download, upload, download again: identical bytes; compare matches.
        assert finger.load_model(3, 1) == af.OK
        data = finger.get_fpdata("char", 1)
        assert len(data) == TEMPLATE_SIZE[model]
        finger.send_fpdata(data, "char", 2)
        assert finger.get_fpdata("char", 2) == data
        assert finger.compare_templates() == af.OK
        if model == "r503":
            assert finger.set_led(color=2, mode=1) == af.OK
            image = finger.get_fpdata("image", 1)
            assert len(image) == 192 * 192 // 2
            finger.soft_reset()  # reads the 0x55 that follows the acknowledge
        assert finger.delete_model(3) == af.OK
        assert finger.count_templates() == af.OK
        assert finger.template_count == 0
        assert finger.store_model(4, 1) in (af.OK, af.BADLOCATION, 0x01)
        assert finger.empty_library() == af.OK
        assert finger.count_templates() == af.OK
        assert finger.template_count == 0
    finally:
        uart.close()
