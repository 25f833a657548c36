"""Run INSIDE the peer venv (bench/out/peer-venv): where does the `face_recognition` CLI find faces?

The CLI prints one line per face (a name or ``unknown_person``) but no box, so the benchmark
cannot score its hits against ground truth from its output alone. This script runs the CLI's own
``test_image`` (face_recognition 1.3.0, ``face_recognition_cli.py``) on each photo, with one change:
``face_encodings`` is wrapped to record the face locations it detects (same call, same defaults:
HOG, one upsampling, on the CLI's 1600 px thumbnail) and skips the descriptors, which do not
change where faces are. Boxes are mapped back to the original photo's pixels.

Usage: peer-venv/bin/python bench/peer_boxes.py DIR  -> JSON on stdout {file: {"boxes": [[l,t,w,h],...]}}
This is used for scoring only; the peer's CPU time is measured on the unmodified CLI command.
"""

import contextlib
import io
import json
import os
import sys

import face_recognition.api as api
import face_recognition.face_recognition_cli as cli

state = {}
_load = api.load_image_file


def load_image_file(file, mode="RGB"):
    image = _load(file, mode)
    state["orig_shape"] = image.shape
    return image


def face_encodings(face_image, known_face_locations=None, num_jitters=1, model="small"):
    locations = api.face_locations(face_image)  # what face_encodings does first: HOG, upsample 1
    state["shape"] = face_image.shape
    state["locations"] = locations
    return [None] * len(locations)  # descriptors skipped: face_distance([], x) is empty either way


api.load_image_file = load_image_file
api.face_encodings = face_encodings


def main():
    directory = sys.argv[1]
    out = {}
    for path in sorted(cli.image_files_in_folder(directory)):
        state.clear()
        with contextlib.redirect_stdout(io.StringIO()):
            cli.test_image(path, [], [], 0.6, True)
        factor = state["orig_shape"][1] / state["shape"][1]
        boxes = []
        for top, right, bottom, left in state["locations"]:
            boxes.append([left * factor, top * factor, (right - left) * factor, (bottom - top) * factor])
        out[os.path.basename(path)] = {"boxes": boxes}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
