"""Reading: the words in a frame that name someone, read on the edge off the detection path.

Licence plates of vehicles in a fire-lane incident (located by text detection restricted to the
vehicle's box, kept only when the background has a plate colour and the text the mainland format,
recognised on the plate crop only and voted over several frames, "unreadable" rather than a
guess) and the company words a courier wears or carries (美团外卖, 饿了么, 顺丰速运, 京东物流).
The OCR models are PaddleOCR's PP-OCRv4, shipped inside the ``rapidocr-onnxruntime`` wheel (the
``reading`` extra) and run on onnxruntime. Reading is slow (a tenth of a second to seconds per crop),
so it runs in a background worker the pipeline (plates) or the courier rule (words) hands crops to and
never waits for. Imports
perception, capture and the edge config, never rules or anything downstream.
"""
