import io, numpy as np, pytest
from PIL import Image
from recipekit.images import open_rgb, RGBImage, RGBImageBlock

def _save(tmp_path, im, name, **kw): im.save(tmp_path/name, **kw); return tmp_path/name

@pytest.mark.parametrize('mode,fmt', [('RGBA', 'png'), ('LA', 'png')])
def test_transparency_composited_on_bg(tmp_path, mode, fmt):
    im = Image.new(mode, (3, 1), (0,)*(len(mode)))  # fully transparent black
    px = (0, 0, 255, 255) if mode == 'RGBA' else (0, 255)
    im.putpixel((0, 0), px)
    fn = _save(tmp_path, im, f't.{fmt}')
    out = open_rgb(fn, bg=(10, 20, 30))
    assert out.mode == 'RGB'
    assert out.getpixel((1, 0)) == (10, 20, 30)
    assert out.getpixel((0, 0)) == ((0, 0, 255) if mode == 'RGBA' else (0, 0, 0))

def test_palette_with_transparent_index(tmp_path):
    im = Image.new('P', (2, 1)); im.putpalette([255, 0, 0, 0, 255, 0] + [0]*762)
    im.putpixel((0, 0), 0); im.putpixel((1, 0), 1)
    fn = tmp_path/'p.png'; im.save(fn, transparency=0)
    out = open_rgb(fn)
    assert out.getpixel((0, 0)) == (255, 255, 255)  # transparent index -> white background
    assert out.getpixel((1, 0)) == (0, 255, 0)

def test_cmyk_converted(tmp_path):
    fn = _save(tmp_path, Image.new('CMYK', (4, 4), (0, 255, 255, 0)), 'c.jpg')
    r, g, b = open_rgb(fn).getpixel((1, 1))
    assert r > 200 and g < 60 and b < 60  # cyan 0, magenta + yellow full -> red

def test_16bit_gray_scaled_monotonically(tmp_path):
    a = np.array([[0, 1000, 30000, 65535]], dtype=np.uint16)
    fn = _save(tmp_path, Image.fromarray(a), 'g.png')
    out = np.asarray(open_rgb(fn))[0, :, 0]
    np.testing.assert_array_equal(out, np.rint(a[0]/257).astype(np.uint8))
    assert out[-1] == 255 and (np.diff(out.astype(int)) >= 0).all()

def test_32bit_int_outside_16bit_range_is_stretched(tmp_path):
    im = Image.fromarray(np.array([[-100, 0, 100]], dtype=np.int32), 'I')
    fn = _save(tmp_path, im, 'i.tif')
    np.testing.assert_array_equal(np.asarray(open_rgb(fn))[0, :, 0], [0, 128, 255])

def test_exif_orientation_applied(tmp_path):
    im = Image.new('RGB', (40, 20), (255, 0, 0)); im.paste((0, 0, 255), (0, 0, 20, 20))  # left half blue
    exif = Image.Exif(); exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    fn = tmp_path/'o.jpg'; im.save(fn, exif=exif, quality=95)
    out = open_rgb(fn)
    assert out.size == (20, 40)
    assert out.getpixel((10, 5))[2] > 200   # the blue half is now on top
    assert RGBImage.create(fn).size == (20, 40)  # same at prediction time (fastai's test_dl uses the same block)

def test_reduced_scale_decoding(tmp_path):
    fn = _save(tmp_path, Image.new('RGB', (2592, 1944), (50, 60, 70)), 'big.jpg')
    assert open_rgb(fn, size=224).size == (324, 243)  # 1/8 scale keeps the short side >= 224
    assert open_rgb(fn, size=300).size == (648, 486)

@pytest.mark.parametrize('content,reason', [(b'', 'not an image'), (b'hello', 'not an image')])
def test_unreadable(tmp_path, content, reason):
    (tmp_path/'x.jpg').write_bytes(content)
    with pytest.raises(ValueError, match=f"Cannot use image file .*x.jpg.*{reason}.*Replace or delete it"):
        open_rgb(tmp_path/'x.jpg')

def test_truncated_jpeg(tmp_path):
    fn = _save(tmp_path, Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)),
               'a.jpg')
    data = fn.read_bytes(); (tmp_path/'cut.jpg').write_bytes(data[:len(data)//2])
    with pytest.raises(ValueError, match='truncated or corrupt'): open_rgb(tmp_path/'cut.jpg')
    from PIL import ImageFile
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False

def test_missing(tmp_path):
    with pytest.raises(ValueError, match='does not exist'): open_rgb(tmp_path/'nope.png')

def test_block_opens_through_open_rgb(tmp_path):
    fn = _save(tmp_path, Image.new('CMYK', (2000, 1000), (0, 255, 255, 0)), 'big.jpg')
    im = RGBImageBlock(size=224).type_tfms[0](fn)
    assert isinstance(im, RGBImage) and im.mode == 'RGB' and im.size == (500, 250)  # converted, decoded at 1/4 scale

def test_reduced_scale_decode_matches_full_decode_on_a_real_photo():
    from conftest import shared_data
    fn = (shared_data('hymenoptera')/'val'/'ants'/
          'ants-devouring-remains-of-large-dead-insect-on-red-tile-in-Stellenbosch-South-Africa-closeup-1-DHD.jpg')
    fast_im = open_rgb(fn, size=120)
    assert fast_im.size == (324, 243)  # 2592x1944 decoded at 1/8
    full = np.asarray(open_rgb(fn).resize((160, 120), Image.BICUBIC), np.float32)
    fast = np.asarray(fast_im.resize((160, 120), Image.BICUBIC), np.float32)
    assert np.abs(full - fast).mean() < 2  # within resampling error (0.43 grey levels measured)

def test_decode_cache_serves_repeats_and_is_not_pickled(tmp_path):
    import pickle
    from recipekit.images import DecodeCache
    fn = _save(tmp_path, Image.new('RGB', (20, 10), (1, 2, 3)), 'a.png')
    block = RGBImageBlock(cache_mb=1)
    create = block.type_tfms[0]; cache = create.keywords['cache']
    a, b = create(fn), create(fn)
    assert (cache.hits, cache.misses, cache.nbytes) == (1, 1, 600)
    a.putpixel((0, 0), (9, 9, 9)); assert create(fn).getpixel((0, 0)) == (1, 2, 3)  # callers get copies
    assert len(pickle.loads(pickle.dumps(create)).keywords['cache']) == 0
    assert RGBImageBlock().type_tfms[0].keywords['cache'] is None

def test_decode_cache_evicts_least_recently_used():
    from recipekit.images import DecodeCache
    c = DecodeCache(max_mb=2*300/2**20)  # two 10x10 RGB images
    make = lambda: Image.new('RGB', (10, 10))
    for k in 'abac': c.get(k, make)  # 'a' used again, so 'b' goes when 'c' arrives
    assert list(c.d) == ['a', 'c'] and c.nbytes == 600
