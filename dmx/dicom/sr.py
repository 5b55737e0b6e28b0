"""The measurements as a DICOM Comprehensive SR: TID 1500 Measurement Report, built with highdicom.

One measurement group (TID 1501) per level, tracking identifier = the level
(``C4-C5``), finding site = its intervertebral disc (SNOMED CT): rotation ROM,
translation (mm and % of depth), the rotation and offset ranges, the excursion
from neutral, the per-level uncertainty (1 SD, as a statistical property) when
measurements.json has it, and each flag as a qualitative evaluation (present /
absent; a flag that could not be evaluated is left out, never "absent"). One
group per key frame (neutral, flexion, extension) holds the curve: Cobb angle
(SNOMED CT), posterior-tangent ARA, Ishihara CCI and the curve class. When the
atlanto-dental interval was measured, one group (tracking identifier ``ADI``,
finding site the atlanto-axial joint) holds its largest value and flag. Every
group names the algorithm (dmx, its version, the thresholds used) and
references the source images with the key frame numbers.

Values are written as they are in measurements.json: the Floating Point Value
(FD) of each NUM item holds the exact double, the Numeric Value (DS) its
16-character rendering. A ``null`` value is left out.
"""

from __future__ import annotations

from typing import Any

from dmx.dicom import codes
from dmx.dicom.source import MANUFACTURER, SR_SERIES_NUMBER, SourceStudy, result_uid

#: (measurements.json key, concept, unit, uncertainty key, key frames referenced)
LEVEL_MEASUREMENTS: tuple[tuple[str, Any, Any, str | None, tuple[str, ...]], ...] = (
    (
        "rotation_rom_deg",
        codes.ROTATION_ROM,
        codes.DEGREE,
        "rotation_rom_uncertainty_deg",
        ("flexion", "extension"),
    ),
    (
        "translation_mm",
        codes.TRANSLATION_MM,
        codes.MILLIMETER,
        "translation_uncertainty_mm",
        ("flexion", "extension"),
    ),
    (
        "translation_pct",
        codes.TRANSLATION_PCT,
        codes.PERCENT,
        "translation_uncertainty_pct",
        ("flexion", "extension"),
    ),
    ("rotation_range_deg", codes.ROTATION_RANGE, codes.DEGREE, None, ()),
    ("offset_range_mm", codes.OFFSET_RANGE, codes.MILLIMETER, None, ()),
    ("excursion_mm", codes.EXCURSION, codes.MILLIMETER, None, ("neutral",)),
)

#: (measurements.json key under curve.<key frame>, concept, unit)
CURVE_MEASUREMENTS: tuple[tuple[str, Any, Any], ...] = (
    ("cobb_c2c7_deg", codes.COBB_ANGLE, codes.DEGREE),
    ("ara_c2c7_deg", codes.ARA, codes.DEGREE),
    ("cci", codes.CCI, codes.PERCENT),
)

KEY_FRAME_NAMES = ("neutral", "flexion", "extension")
SR_SERIES_DESCRIPTION = "dmx measurements (SR)"
DEVICE_UID = "2.25.318114213306436155063683226893364003811"  # dmx as an observer device (fixed)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _key_frames(measurements: dict[str, Any], n_frames: int) -> dict[str, int]:
    frames = measurements.get("frames") or {}
    out = {}
    for k in KEY_FRAME_NAMES:
        v = frames.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < n_frames:
            out[k] = v
    return out


def _algorithm(measurements: dict[str, Any]) -> Any:
    from highdicom.sr import AlgorithmIdentification

    params, origins = [], []
    for name, t in sorted((measurements.get("thresholds") or {}).items()):
        if isinstance(t, dict) and "value" in t:
            unit = f" {t['unit']}" if t.get("unit") else ""
            params.append(f"{name}={t['value']}{unit}")
            origin = str(t.get("origin") or "default")
            if origin != "default" and origin not in origins:
                origins.append(origin)
    params += [f"thresholds from {o}" for o in origins] or ["thresholds: defaults (spec section 7)"]
    software = measurements.get("software") or {}
    return AlgorithmIdentification(
        name=str(software.get("name") or "dmx"),
        version=str(software.get("version") or "unknown"),
        parameters=params or None,
        family=codes.ALGORITHM_FAMILY,
    )


def _statistical(value: float, unit: Any) -> Any:
    from highdicom.sr import MeasurementProperties, MeasurementStatisticalProperties, NumContentItem
    from highdicom.sr.enum import RelationshipTypeValues

    sd = NumContentItem(
        name=codes.STANDARD_DEVIATION,
        value=value,
        unit=unit,
        relationship_type=RelationshipTypeValues.HAS_PROPERTIES,
    )
    return MeasurementProperties(
        measurement_statistical_properties=MeasurementStatisticalProperties(values=[sd])
    )


def _image_refs(source: SourceStudy, indices: list[int], kind: str) -> list[Any]:
    import highdicom.sr as hsr

    cls = hsr.SourceImageForMeasurement if kind == "measurement" else hsr.SourceImageForMeasurementGroup
    return [
        cls(sop_class, sop_instance, referenced_frame_numbers=nums or None)
        for (sop_class, sop_instance), nums in source.refs(indices).items()
    ]


def _flag_evaluations(block: dict[str, Any], concepts: dict[str, Any]) -> list[Any]:
    """Each flag of ``block`` as present / absent (a flag not evaluated is left out, never absent)."""
    import highdicom.sr as hsr

    raised = set(block.get("flags") or [])
    not_evaluated = set(block.get("flags_not_evaluated") or [])
    return [
        hsr.QualitativeEvaluation(concept, codes.PRESENT if flag in raised else codes.ABSENT)
        for flag, concept in concepts.items()
        if flag in raised or flag not in not_evaluated
    ]


def level_group(
    name: str,
    level: dict[str, Any],
    *,
    key_frames: dict[str, int],
    source: SourceStudy,
    algorithm: Any,
    uid: str,
) -> Any:
    """TID 1501 group of one level (``name`` such as ``"C4-C5"``)."""
    import highdicom.sr as hsr

    measurements = []
    for key, concept, unit, sd_key, keys in LEVEL_MEASUREMENTS:
        value = _number(level.get(key))
        if value is None:
            continue
        sd = _number(level.get(sd_key)) if sd_key else None
        frames = [key_frames[k] for k in keys if k in key_frames]
        measurements.append(
            hsr.Measurement(
                name=concept,
                value=value,
                unit=unit,
                properties=None if sd is None else _statistical(sd, unit),
                referenced_images=_image_refs(source, frames, "measurement") if frames else None,
            )
        )
    evaluations = _flag_evaluations(level, codes.FLAGS)
    site = codes.LEVEL_SITES.get(name)
    return hsr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hsr.TrackingIdentifier(uid=uid, identifier=name),
        algorithm_id=algorithm,
        finding_sites=None if site is None else [hsr.FindingSite(site)],
        measurements=measurements or None,
        qualitative_evaluations=evaluations or None,
        source_images=_image_refs(source, sorted(key_frames.values()), "group") or None,
    )


def curve_group(
    key: str, curve: dict[str, Any], *, frame: int | None, source: SourceStudy, algorithm: Any, uid: str
) -> Any:
    """TID 1501 group of the curve at one key frame (``key``: neutral, flexion or extension)."""
    import highdicom.sr as hsr

    measurements = []
    for k, concept, unit in CURVE_MEASUREMENTS:
        value = _number(curve.get(k))
        if value is not None:
            measurements.append(
                hsr.Measurement(
                    name=concept,
                    value=value,
                    unit=unit,
                    referenced_images=None if frame is None else _image_refs(source, [frame], "measurement"),
                )
            )
    klass = str(curve.get("class") or "undetermined")
    code = codes.CURVE_CLASSES.get(f"{klass}/{curve.get('s_type')}") or codes.CURVE_CLASSES.get(klass)
    evaluations = [hsr.QualitativeEvaluation(codes.KEY_FRAME, codes.KEY_FRAMES[key])]
    if code is not None:
        evaluations.append(hsr.QualitativeEvaluation(codes.CURVE_CLASS, code))
    return hsr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hsr.TrackingIdentifier(uid=uid, identifier=f"curve {key}"),
        algorithm_id=algorithm,
        finding_sites=[hsr.FindingSite(codes.CERVICAL_SPINE)],
        measurements=measurements or None,
        qualitative_evaluations=evaluations,
        source_images=None if frame is None else _image_refs(source, [frame], "group"),
    )


def adi_group(adi: dict[str, Any], *, source: SourceStudy, algorithm: Any, uid: str) -> Any | None:
    """TID 1501 group of the atlanto-dental interval (``measurements.json`` ``adi``), or ``None``.

    Holds the largest ADI over the motion (mm; the frame it was seen in is
    referenced) and the ADI flag (present / absent; left out when not evaluated).
    ``None`` when there is neither a value nor an evaluated flag (e.g. uncalibrated).
    """
    import highdicom.sr as hsr
    import numpy as np

    measurements = []
    value = _number(adi.get("max_mm"))
    if value is not None:
        per_frame = np.array([np.nan if v is None else float(v) for v in adi.get("adi_mm") or []])
        frames = [int(np.nanargmax(per_frame))] if np.isfinite(per_frame).any() else []
        measurements.append(
            hsr.Measurement(
                name=codes.ADI_MAX,
                value=value,
                unit=codes.MILLIMETER,
                referenced_images=_image_refs(source, frames, "measurement") if frames else None,
            )
        )
    evaluations = _flag_evaluations(adi, codes.ADI_FLAGS)
    if not measurements and not evaluations:
        return None
    return hsr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hsr.TrackingIdentifier(uid=uid, identifier="ADI"),
        algorithm_id=algorithm,
        finding_sites=[hsr.FindingSite(codes.ATLANTOAXIAL_JOINT)],
        measurements=measurements or None,
        qualitative_evaluations=evaluations or None,
    )


def build_sr(measurements: dict[str, Any], source: SourceStudy, *, measurements_text: str) -> Any:
    """The Comprehensive SR (TID 1500) of ``measurements`` in the source study.

    Parameters
    ----------
    measurements : dict
        The measurements.json document.
    source : SourceStudy
        The source study's headers (patient and study modules are copied from it).
    measurements_text : str
        The measurements.json text (the UIDs derive from it).

    Returns
    -------
    highdicom.sr.ComprehensiveSR
    """
    import highdicom.sr as hsr
    from pydicom.dataset import Dataset

    n = len(source.frames)
    key_frames = _key_frames(measurements, n)
    algorithm = _algorithm(measurements)
    groups = [
        level_group(
            name,
            level,
            key_frames=key_frames,
            source=source,
            algorithm=algorithm,
            uid=result_uid(measurements_text, f"tracking {name}"),
        )
        for name, level in (measurements.get("levels") or {}).items()
    ]
    for key in KEY_FRAME_NAMES:
        curve = (measurements.get("curve") or {}).get(key)
        if isinstance(curve, dict):
            groups.append(
                curve_group(
                    key,
                    curve,
                    frame=key_frames.get(key),
                    source=source,
                    algorithm=algorithm,
                    uid=result_uid(measurements_text, f"tracking curve {key}"),
                )
            )
    adi = measurements.get("adi")
    if isinstance(adi, dict):
        group = adi_group(
            adi, source=source, algorithm=algorithm, uid=result_uid(measurements_text, "tracking adi")
        )
        if group is not None:
            groups.append(group)
    observer = hsr.ObserverContext(
        observer_type=hsr.CodedConcept.from_code(codes.DEVICE),
        observer_identifying_attributes=hsr.DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID,
            name="dmx",
            manufacturer_name=MANUFACTURER,
            model_name="dmx",
        ),
    )
    report = hsr.MeasurementReport(
        observation_context=hsr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.FLUOROSCOPY,
        imaging_measurements=groups,
    )
    software = measurements.get("software") or {}
    sr = hsr.ComprehensiveSR(
        evidence=source.datasets,
        content=report,
        series_instance_uid=result_uid(measurements_text, "sr series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=result_uid(measurements_text, "sr"),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        is_final=False,
        is_verified=False,
        series_description=SR_SERIES_DESCRIPTION,
    )
    sr.SoftwareVersions = str(software.get("version") or "unknown")
    sr.ManufacturerModelName = "dmx"
    scheme = Dataset()
    scheme.CodingSchemeDesignator = codes.DMX_SCHEME
    scheme.CodingSchemeName = codes.DMX_SCHEME_NAME
    scheme.CodingSchemeVersion = codes.DMX_SCHEME_VERSION
    scheme.CodingSchemeResponsibleOrganization = "dmx project"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr
