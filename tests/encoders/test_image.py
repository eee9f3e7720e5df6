import numpy as np
import pytest

from deepinterest.encoders.image import CLIPImageEncoder
from deepinterest.errors import DeepInterestError


def _tiny_clip():
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64,
                                           num_hidden_layers=1, num_attention_heads=2,
                                           image_size=32, patch_size=8, projection_dim=16)
    model = transformers.CLIPVisionModelWithProjection(config)
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32},
                                                crop_size={"height": 32, "width": 32})
    return CLIPImageEncoder("tiny", device="cpu", model=model, processor=processor)


def test_clip_encoder_embeds_local_images(tmp_path):
    from PIL import Image

    paths = []
    for n, colour in enumerate([(255, 0, 0), (0, 0, 255), (255, 0, 0)]):
        paths.append(tmp_path / f"{n}.png")
        Image.new("RGB", (40, 40), colour).save(paths[-1])
    vecs = _tiny_clip().encode(paths)
    assert vecs.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vecs[0], vecs[2], atol=1e-6)  # same pixels, same vector
    assert not np.allclose(vecs[0], vecs[1])


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(DeepInterestError, match="broken.jpg"):
        _tiny_clip().encode([bad])
