"""GIfTI outputs carry standard metadata, checked with two independent readers: nibabel, and a
reader of the GIfTI XML written here with the standard library only (xml.etree, base64, zlib), which
shares no code with nibabel; and Connectome Workbench's ``wb_command -file-information`` where it is
installed (skipped otherwise)."""

from __future__ import annotations

import base64
import shutil
import subprocess
import xml.etree.ElementTree as ET
import zlib

import nibabel as nib
import numpy as np
import pytest
import trimesh

from cortexgraph.data.manifest import Area, AreaTable
from cortexgraph.meshes.io import hemisphere_structure, write_gifti_surface
from cortexgraph.render.export import area_label_table, write_gifti_labels, write_gifti_scalars

_DTYPES = {"NIFTI_TYPE_FLOAT32": "f4", "NIFTI_TYPE_INT32": "i4", "NIFTI_TYPE_UINT8": "u1"}


def read_gifti_xml(path):
    """(file metadata, [(attributes, metadata, coordinate system or None, array)]) of a GIfTI file,
    parsed from its XML without nibabel."""
    root = ET.parse(path).getroot()
    assert root.tag == "GIFTI"

    def meta(element):
        out = {}
        if element is None:
            return out
        for md in element.findall("MD"):
            out[md.findtext("Name")] = md.findtext("Value")
        return out

    arrays = []
    for darray in root.findall("DataArray"):
        attrs = dict(darray.attrib)
        shape = [int(attrs[f"Dim{k}"]) for k in range(int(attrs["Dimensionality"]))]
        order = "C" if attrs.get("ArrayIndexingOrder") == "RowMajorOrder" else "F"
        endian = "<" if attrs.get("Endian", "LittleEndian") == "LittleEndian" else ">"
        raw = base64.b64decode(darray.findtext("Data").strip())
        if attrs["Encoding"] == "GZipBase64Binary":
            raw = zlib.decompress(raw)
        else:
            assert attrs["Encoding"] == "Base64Binary", attrs["Encoding"]
        data = np.frombuffer(raw, dtype=endian + _DTYPES[attrs["DataType"]]).reshape(shape, order=order)
        coordsys = None
        element = darray.find("CoordinateSystemTransformMatrix")
        if element is not None:
            matrix = np.array(element.findtext("MatrixData").split(), dtype=float).reshape(4, 4)
            coordsys = (element.findtext("DataSpace"), element.findtext("TransformedSpace"), matrix)
        arrays.append((attrs, meta(darray.find("MetaData")), coordsys, data))
    return meta(root.find("MetaData")), arrays


def _mesh():
    sphere = trimesh.creation.icosphere(subdivisions=2, radius=12.5)
    return np.asarray(sphere.vertices) + [-30.0, 5.0, 10.0], np.asarray(sphere.faces)


@pytest.mark.parametrize("hemi, structure", [("lh", "CortexLeft"), ("rh", "CortexRight")])
def test_midsurface_is_cortex_of_its_hemisphere_in_scanner_mm(tmp_path, hemi, structure):
    vertices, faces = _mesh()
    path = write_gifti_surface(
        tmp_path / f"midsurface_{hemi}.gii",
        vertices,
        faces,
        structure=hemisphere_structure(hemi),
        secondary="MidThickness",
    )
    # reader 1: nibabel
    image = nib.load(path)
    assert image.meta["AnatomicalStructurePrimary"] == structure
    points = image.get_arrays_from_intent("NIFTI_INTENT_POINTSET")[0]
    assert points.coordsys.dataspace == 1 and points.coordsys.xformspace == 1  # scanner anat
    np.testing.assert_array_equal(points.coordsys.xform, np.eye(4))
    assert points.meta["AnatomicalStructurePrimary"] == structure
    assert points.meta["GeometricType"] == "Anatomical"
    np.testing.assert_allclose(points.data, vertices, atol=1e-4)
    # reader 2: the XML itself
    file_meta, arrays = read_gifti_xml(path)
    assert file_meta["AnatomicalStructurePrimary"] == structure
    assert file_meta["AnatomicalStructureSecondary"] == "MidThickness"
    (p_attrs, p_meta, p_sys, p_data), (t_attrs, _, t_sys, t_data) = arrays
    assert p_attrs["Intent"] == "NIFTI_INTENT_POINTSET" and t_attrs["Intent"] == "NIFTI_INTENT_TRIANGLE"
    assert p_sys[0] == p_sys[1] == "NIFTI_XFORM_SCANNER_ANAT"  # not Talairach
    np.testing.assert_array_equal(p_sys[2], np.eye(4))
    assert p_meta["AnatomicalStructurePrimary"] == structure
    np.testing.assert_allclose(p_data, vertices, atol=1e-4)  # mm, as written
    np.testing.assert_array_equal(t_data, faces)


def test_label_and_scalar_files_name_their_hemisphere(tmp_path):
    areas = AreaTable([Area(4, "hOc1", "#d62728"), Area(7, "hOc2", "#1f77b4")])
    labels = np.array([0, 4, 7, 7, 4])
    write_gifti_labels(tmp_path / "lh.label.gii", labels, area_label_table(areas),
                       structure="CortexLeft")  # fmt: skip
    write_gifti_scalars(tmp_path / "rh.func.gii", np.linspace(0, 1, 5), ["p_hOc1"],
                        structure="CortexRight")  # fmt: skip
    file_meta, arrays = read_gifti_xml(tmp_path / "lh.label.gii")
    assert file_meta["AnatomicalStructurePrimary"] == "CortexLeft"
    assert arrays[0][0]["Intent"] == "NIFTI_INTENT_LABEL"
    np.testing.assert_array_equal(arrays[0][3], labels)
    table = ET.parse(tmp_path / "lh.label.gii").getroot().find("LabelTable")
    names = {int(e.get("Key")): e.text for e in table.findall("Label")}
    assert names == {0: "unlabelled", 4: "hOc1", 7: "hOc2"}
    assert nib.load(tmp_path / "lh.label.gii").meta["AnatomicalStructurePrimary"] == "CortexLeft"
    file_meta, arrays = read_gifti_xml(tmp_path / "rh.func.gii")
    assert file_meta["AnatomicalStructurePrimary"] == "CortexRight"
    np.testing.assert_allclose(arrays[0][3], np.linspace(0, 1, 5), atol=1e-7)
    assert arrays[0][1]["Name"] == "p_hOc1"


def test_phantom_true_midsurfaces_name_their_hemisphere(tiny_cohort):
    for hemi, structure in (("lh", "CortexLeft"), ("rh", "CortexRight")):
        path = tiny_cohort / "ground_truth" / "B01" / f"midsurface_{hemi}.gii"
        file_meta, arrays = read_gifti_xml(path)
        assert file_meta["AnatomicalStructurePrimary"] == structure
        points = arrays[0]
        assert points[2][0] == "NIFTI_XFORM_SCANNER_ANAT"
        x = points[3][:, 0]
        # world RAS: the left hemisphere lies at smaller x than the right one
        assert (np.median(x) < 0) == (hemi == "lh")


@pytest.mark.skipif(shutil.which("wb_command") is None, reason="Connectome Workbench not installed")
def test_connectome_workbench_reads_hemisphere_and_surface_type(tmp_path):
    """The third reader, where it is installed (Debian: apt-get install connectome-workbench)."""
    vertices, faces = _mesh()
    for hemi, structure in (("lh", "CortexLeft"), ("rh", "CortexRight")):
        surface = write_gifti_surface(
            tmp_path / f"midsurface_{hemi}.surf.gii", vertices, faces,
            structure=hemisphere_structure(hemi), secondary="MidThickness",
        )  # fmt: skip
        labels = write_gifti_labels(
            tmp_path / f"{hemi}_pred.label.gii", np.zeros(len(vertices), int),
            {0: ("unlabelled", (210, 210, 210))}, structure=structure,
        )  # fmt: skip
        for path, kind in ((surface, "Surface"), (labels, "Label")):
            info = subprocess.run(
                ["wb_command", "-file-information", str(path)],
                capture_output=True, text=True, timeout=120,
            ).stdout  # fmt: skip
            fields = {k.strip(): v.strip() for k, _, v in
                      (line.partition(":") for line in info.splitlines()) if v}  # fmt: skip
            assert fields["Type"] == kind and fields["Structure"] == structure, info
            assert int(fields["Number of Vertices"]) == len(vertices)
        info = subprocess.run(["wb_command", "-file-information", str(surface)],
                              capture_output=True, text=True, timeout=120).stdout  # fmt: skip
        assert "Anatomical" in info and "Midthickness" in info
        x_min = float(next(line for line in info.splitlines() if "X-minimum" in line).split(":")[1])
        assert x_min == pytest.approx(vertices[:, 0].min(), abs=1e-3)  # millimetres, as written
