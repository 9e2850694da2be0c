"""``edge-provision enrol SUBJECT``: refuses without consent, guides the capture, reports counts."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from edge.errors import EdgeError
from edge.modality import BIOMETRIC, in_order
from provisioning.common import EXIT_OK, json_option, print_json, state_of, state_option, table

FACE_TIMEOUT_S = 30.0


@click.command("enrol")
@click.argument("subject")
@click.option("--modality", type=click.Choice([m.value for m in in_order(BIOMETRIC)]), required=True)
@click.option("--frames", type=int, help="Good face frames to keep [default: [face] enrol_frames, 5].")
@click.option("--captures", type=int, help="Finger captures to merge [default: [fingerprint] enrol_captures, 2].")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    help="Seconds allowed for the capture [default: face 30; finger [fingerprint] capture_timeout_s, 10].",
)
@click.option(
    "--duress",
    is_flag=True,
    help="Fingerprint: this is the person's duress finger (opens the door as usual, silently alarms the site).",
)
@state_option
@json_option
def enrol_cmd(
    subject: str,
    modality: str,
    frames: int | None,
    captures: int | None,
    timeout_s: float | None,
    duress: bool,
    state_dir: Path,
    as_json: bool,
) -> int:
    """Enrol SUBJECT (a pseudonymous id from the consent list) for one modality."""
    from provisioning import enrol, hooks

    if duress and modality != "fingerprint":
        raise click.UsageError("--duress is for a fingerprint enrolment")
    ports = hooks.enrol_ports(state_of(state_dir), modality)
    if ports is None:
        raise EdgeError(
            "enrolment is not wired in this build (face, fingerprint, gallery and consent drivers)",
            hint="see provisioning/hooks.py:enrol_ports",
        )

    def feedback(text: str) -> None:
        if not as_json:
            click.echo(f"  {text}")

    try:
        if modality == "face":
            if ports.camera is None or ports.pipeline is None:
                raise EdgeError("this terminal has no camera or face models configured")
            camera = ports.camera()
            try:
                report = enrol.enrol_face(
                    subject,
                    enforcer=ports.enforcer,
                    camera=camera,
                    pipeline=ports.pipeline,
                    gallery=ports.gallery,
                    model_id=ports.model_id,
                    sink=ports.sink,
                    wanted=frames or ports.face_frames,
                    timeout_s=timeout_s or FACE_TIMEOUT_S,
                    feedback=feedback,
                    challenge=ports.face_challenge,
                    share=ports.share_face,
                )
            finally:
                camera.close()
        else:
            if ports.sensor is None:
                raise EdgeError("this terminal has no fingerprint sensor configured")
            report = enrol.enrol_finger(
                subject,
                enforcer=ports.enforcer,
                sensor=ports.sensor(),
                gallery=ports.gallery,
                sink=ports.sink,
                captures=captures or ports.finger_captures,
                timeout_s=timeout_s or ports.finger_timeout_s,
                feedback=feedback,
                duress=duress,
                duress_slots=ports.duress_slots,
                share=ports.share_finger,
            )
    finally:
        for close in reversed(ports.closers):
            close()
    if as_json:
        print_json(asdict(report))
        return EXIT_OK
    rows = [("modality", report.modality), ("templates stored", report.stored)]
    if report.sensor_slot is not None:
        rows.append(("sensor slot", report.sensor_slot))
        if duress:
            rows.append(("duress finger", "yes: opens the door as usual and silently alarms the site"))
    if report.frames_seen:
        rows.append(("frames seen", report.frames_seen))
    rows += [(f"refused: {reason}", count) for reason, count in sorted(report.rejected.items())]
    if report.shared_with:
        rows.append(("shared with", f"{report.shared_with} other gate(s) in the person's consent scope (sealed)"))
    if report.duplicate_of:
        rows.append(("FLAGGED", f"matches enrolled subject {report.duplicate_of}: review before use"))
    table(f"Enrolled {subject}", ["item", "value"], rows)
    return EXIT_OK
