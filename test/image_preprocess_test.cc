// Image preprocessing against an independent reference: /usr/bin/python3 with PIL and
// numpy doing LLaVA-1.5's pipeline (expand2square, then CLIPImageProcessor's resize of the
// shortest side with PIL bicubic, centre crop, rescale, normalise), written below as a
// small script. Every real image of shared/data/images (JPEG, PNG, and WebP named .jpg) is
// compared pixel by pixel in both aspect modes, from the file bytes: the decoded and the
// resized uint8 images must equal PIL's exactly and the floats must be identical. Decoding
// is also checked on synthetic files (PNG/BMP/GIF/JPEG/WebP variants, animated WebP,
// truncated and corrupt JPEG/WebP: where PIL decodes, the pixels are PIL's; where PIL
// raises, the decoder refuses). The resize kernel alone is swept against Image.resize.
// Bad inputs give their reason codes, and `align2 preprocess` writes what the library
// computes.
// PIL missing is a failure, not a skip: `bash scripts/install-deps.sh` installs it.
#include "core/model/image_preprocess.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "kernels/image_resample.h"
#include "test/test_support.h"

namespace align2 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The reference. Independent of the C++ code: it follows LLaVA's llava/mm_utils.py and
// transformers' image_transforms.py / image_processing_clip.py, with PIL doing decode and
// resize exactly as there. Subcommands write raw arrays (uint8 HWC, float32 CHW) and a
// manifest.json into OUTDIR.
const char* kReferenceScript = R"PY(
import json, math, os, struct, sys, zlib
import numpy as np
from PIL import Image

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

def expand2square(pil_img, background_color):  # llava/mm_utils.py
    width, height = pil_img.size
    if width == height:
        return pil_img
    elif width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    else:
        result = Image.new(pil_img.mode, (height, height), background_color)
        result.paste(pil_img, ((height - width) // 2, 0))
        return result

def resize_output_size(width, height, size):  # get_resize_output_image_size(default_to_square=False)
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if width <= height else (new_long, new_short)  # (w, h)

def center_crop(arr, crop_h, crop_w):  # image_transforms.center_crop on [h, w, c]
    h, w = arr.shape[:2]
    top = (h - crop_h) // 2
    bottom = top + crop_h
    left = (w - crop_w) // 2
    right = left + crop_w
    if top >= 0 and bottom <= h and left >= 0 and right <= w:
        return arr[top:bottom, left:right]
    nh, nw = max(crop_h, h), max(crop_w, w)
    new = np.zeros((nh, nw) + arr.shape[2:], dtype=arr.dtype)
    tp, lp = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
    new[tp:tp + h, lp:lp + w] = arr
    top, bottom, left, right = top + tp, bottom + tp, left + lp, right + lp
    return new[max(0, top):min(nh, bottom), max(0, left):min(nw, right)]

def clip_processor(img, size):  # CLIPImageProcessor.preprocess, one RGB image
    w, h = resize_output_size(img.size[0], img.size[1], size)
    resized = np.asarray(img.resize((w, h), resample=Image.BICUBIC))
    crop = center_crop(resized, size, size)
    x = (crop.astype(np.float64) * (1 / 255)).astype(np.float32)  # rescale
    x = (x - np.array(MEAN, dtype=np.float32)) / np.array(STD, dtype=np.float32)  # normalize
    return resized, np.ascontiguousarray(x.transpose(2, 0, 1))

def pattern(kind, h, w, c, seed):
    rng = np.random.RandomState(seed)
    if kind == 'noise':
        a = rng.randint(0, 256, size=(h, w, c))
    elif kind == 'checker':
        a = ((np.arange(h)[:, None] // 2 + np.arange(w)[None, :] // 3) % 2 * 255)[:, :, None].repeat(c, 2)
    else:  # gradient with a little noise
        a = (np.arange(w)[None, :, None] * 255 // max(1, w - 1) + rng.randint(-3, 4, size=(h, w, c)))
    return np.clip(a, 0, 255).astype(np.uint8).reshape(h, w, c)

def cmd_pipeline(list_file, outdir, sizes):
    manifest = []
    paths = [p for p in open(list_file).read().split('\n') if p]
    for i, path in enumerate(paths):
        im = Image.open(path)
        entry = {'path': path, 'format': im.format, 'mode': im.mode, 'width': im.size[0], 'height': im.size[1],
                 'progressive': int(bool(im.info.get('progressive'))), 'resized': {}}
        rgb = im.convert('RGB')
        np.asarray(rgb).tofile(os.path.join(outdir, 'dec_%d.u8' % i))
        for size in sizes:
            for aspect in ('pad', 'square'):
                src = expand2square(rgb, tuple(int(x * 255) for x in MEAN)) if aspect == 'pad' else rgb
                resized, px = clip_processor(src, size)
                tag = '%s_%d_%d' % (aspect, size, i)
                resized.tofile(os.path.join(outdir, 'rs_' + tag + '.u8'))
                px.tofile(os.path.join(outdir, 'px_' + tag + '.f32'))
                entry['resized']['%s_%d' % (aspect, size)] = [resized.shape[1], resized.shape[0]]
        manifest.append(entry)
    json.dump(manifest, open(os.path.join(outdir, 'manifest.json'), 'w'))

def cmd_resize(cases_file, outdir):
    for i, c in enumerate(json.load(open(cases_file))):
        chans = 1 if c['mode'] == 'L' else 3
        a = pattern(c['pattern'], c['h'], c['w'], chans, c['seed'])
        a.tofile(os.path.join(outdir, 'src_%d.u8' % i))
        im = Image.fromarray(a[:, :, 0] if chans == 1 else a, c['mode'])
        out = np.asarray(im.resize((c['dw'], c['dh']), resample=Image.BICUBIC))
        out.tofile(os.path.join(outdir, 'dst_%d.u8' % i))

def cmd_sizes(outfile):
    rows = []
    sides = list(range(1, 400)) + [479, 480, 511, 640, 667, 1023, 1080, 1920, 4000, 65535, 99991]
    for size in (224, 336, 337):
        for w in sides:
            for h in sides:
                rows.append((w, h, size) + resize_output_size(w, h, size))
    rng = np.random.RandomState(7)
    for w, h in rng.randint(1, 200000, size=(20000, 2)):
        rows.append((int(w), int(h), 336) + resize_output_size(int(w), int(h), 336))
    np.array(rows, dtype=np.int64).tofile(outfile)

def cmd_crop(cases_file, outdir):
    for i, c in enumerate(json.load(open(cases_file))):
        a = pattern('noise', c['h'], c['w'], 3, i)
        a.tofile(os.path.join(outdir, 'src_%d.u8' % i))
        center_crop(a, c['ch'], c['cw']).tofile(os.path.join(outdir, 'dst_%d.u8' % i))

def png(path, w, h, depth, ctype, samples, extra=()):
    # samples: [h, w, channels] integers (palette indices for ctype 3)
    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    rows = []
    for r in samples.reshape(h, -1):
        if depth == 16:
            rows.append(b'\0' + r.astype('>u2').tobytes())
        elif depth == 8:
            rows.append(b'\0' + r.astype(np.uint8).tobytes())
        else:
            bits = np.unpackbits(r.astype(np.uint8)[:, None], axis=1)[:, 8 - depth:].reshape(-1)
            rows.append(b'\0' + np.packbits(bits).tobytes())
    data = (b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, depth, ctype, 0, 0, 0)) +
            b''.join(chunk(t, d) for t, d in extra) + chunk(b'IDAT', zlib.compress(b''.join(rows))) +
            chunk(b'IEND', b''))
    open(path, 'wb').write(data)

def cmd_synth(outdir):
    rng = np.random.RandomState(11)
    w, h = 37, 23
    def rnd(hi, c):
        return rng.randint(0, hi, size=(h, w, c))
    files = []  # (name, how the C++ decoder must compare: exact / gif_transparent)
    def add(name, how='exact'):
        files.append({'name': name, 'how': how})
    def write(name, data):
        open(os.path.join(outdir, name), 'wb').write(data)
    g16 = rnd(65536, 1)
    g16[:, ::2] = rnd(300, 1)[:, ::2]  # half of the values near 0..255, where clamping is visible
    png(os.path.join(outdir, 'grey16.png'), w, h, 16, 0, g16); add('grey16.png', 'exact')
    png(os.path.join(outdir, 'grey16_trns.png'), w, h, 16, 0, g16, [(b'tRNS', struct.pack('>H', 100))])
    add('grey16_trns.png', 'exact')
    png(os.path.join(outdir, 'rgb16.png'), w, h, 16, 2, rnd(65536, 3)); add('rgb16.png', 'exact')
    png(os.path.join(outdir, 'rgba16.png'), w, h, 16, 6, rnd(65536, 4)); add('rgba16.png', 'exact')
    png(os.path.join(outdir, 'ga16.png'), w, h, 16, 4, rnd(65536, 2)); add('ga16.png', 'exact')
    png(os.path.join(outdir, 'ga8.png'), w, h, 8, 4, rnd(256, 2)); add('ga8.png', 'exact')
    png(os.path.join(outdir, 'rgba8.png'), w, h, 8, 6, rnd(256, 4)); add('rgba8.png', 'exact')
    png(os.path.join(outdir, 'grey8_trns.png'), w, h, 8, 0, rnd(256, 1), [(b'tRNS', struct.pack('>H', 7))])
    add('grey8_trns.png', 'exact')
    for depth in (1, 2, 4):
        name = 'grey%d.png' % depth
        png(os.path.join(outdir, name), w, h, depth, 0, rnd(1 << depth, 1)); add(name, 'exact')
    plte = rng.randint(0, 256, size=(16, 3)).astype(np.uint8).tobytes()
    png(os.path.join(outdir, 'palette4_trns.png'), w, h, 4, 3, rnd(16, 1),
        [(b'PLTE', plte), (b'tRNS', bytes(range(0, 160, 10)))])
    add('palette4_trns.png', 'exact')
    rgb = pattern('gradient', h, w, 3, 3)
    Image.fromarray(rgb).save(os.path.join(outdir, 'rgb.bmp')); add('rgb.bmp', 'exact')
    Image.fromarray(rgb[:, :, 0]).save(os.path.join(outdir, 'grey.bmp')); add('grey.bmp', 'exact')
    Image.fromarray(rgb).quantize(50).save(os.path.join(outdir, 'palette.bmp')); add('palette.bmp', 'exact')
    Image.fromarray(rgb).quantize(50).save(os.path.join(outdir, 'palette.gif')); add('palette.gif', 'exact')
    Image.fromarray(rgb[:, :, 1]).save(os.path.join(outdir, 'grey.jpg'), quality=90); add('grey.jpg')
    Image.fromarray(rgb).save(os.path.join(outdir, 'progressive.jpg'), quality=85, progressive=True)
    add('progressive.jpg')
    Image.fromarray(rgb[:, :, 2]).save(os.path.join(outdir, 'grey_progressive.jpg'), progressive=True)
    add('grey_progressive.jpg')
    Image.fromarray(rgb).save(os.path.join(outdir, 'yuv444.jpg'), quality=95, subsampling=0); add('yuv444.jpg')
    Image.fromarray(rgb).save(os.path.join(outdir, 'yuv422.jpg'), quality=70, subsampling=1); add('yuv422.jpg')
    noise = pattern('noise', 45, 61, 3, 5)  # odd sizes, not a multiple of the MCU, every level used
    Image.fromarray(noise).save(os.path.join(outdir, 'noise420.jpg'), quality=75, optimize=True)
    add('noise420.jpg')
    Image.fromarray(noise).save(os.path.join(outdir, 'noise_progressive.jpg'), quality=50, progressive=True)
    add('noise_progressive.jpg')
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees to display; PIL.Image.open does not
    Image.fromarray(rgb).save(os.path.join(outdir, 'exif6.jpg'), quality=95, exif=exif.tobytes())
    add('exif6.jpg')
    # Damaged JPEGs: where PIL still decodes (libjpeg warnings ignored) the pixels must be
    # the same; where it raises, the C++ decoder must refuse.
    jpg = open(os.path.join(outdir, 'noise420.jpg'), 'rb').read()
    pjpg = open(os.path.join(outdir, 'noise_progressive.jpg'), 'rb').read()
    write('cut_half.jpg', jpg[:len(jpg) // 2]); add('cut_half.jpg')
    write('cut_progressive.jpg', pjpg[:len(pjpg) * 2 // 3]); add('cut_progressive.jpg')
    write('no_eoi.jpg', jpg[:-2]); add('no_eoi.jpg')
    write('no_eoi_progressive.jpg', pjpg[:-2]); add('no_eoi_progressive.jpg')
    write('trailing_bytes.jpg', jpg + b'garbage after EOI'); add('trailing_bytes.jpg')
    sos = jpg.index(b'\xff\xda')
    bad = bytearray(jpg)
    for k in range(sos + 40, len(jpg) - 10, 97):  # flip entropy-coded bytes (never into a marker)
        if bad[k] not in (0xFF, 0x00) and bad[k - 1] != 0xFF:
            bad[k] ^= 0x55 if (bad[k] ^ 0x55) != 0xFF else 0x11
    write('corrupt_scan.jpg', bytes(bad)); add('corrupt_scan.jpg')
    bad = bytearray(jpg)
    bad[sos + 60:sos + 62] = b'\xff\xd3'  # an unexpected restart marker mid-scan
    write('stray_marker.jpg', bytes(bad)); add('stray_marker.jpg')
    dht = jpg.index(b'\xff\xc4')
    bad = bytearray(jpg)
    bad[dht + 5:dht + 21] = b'\xff' * 16  # code counts summing past 256: libjpeg errors in the header
    write('bad_huffman_table.jpg', bytes(bad)); add('bad_huffman_table.jpg')
    second_sos = pjpg.index(b'\xff\xda', pjpg.index(b'\xff\xda') + 2)
    bad = bytearray(pjpg)
    ns = bad[second_sos + 4]
    bad[second_sos + 5 + 2 * ns + 1] = 0x50  # spectral end 80 > 63: libjpeg errors while decoding
    write('bad_progression.jpg', bytes(bad)); add('bad_progression.jpg')
    # WebP as PIL writes it: lossy and lossless, with and without alpha, and an animation
    # (PIL opens frame 0 of it).
    rgba = np.concatenate([rgb, rnd(256, 1).astype(np.uint8)], axis=2)
    rgba[:5, :, 3] = 0  # fully transparent rows: PIL keeps whatever colour libwebp gives them
    Image.fromarray(rgb).save(os.path.join(outdir, 'lossy.webp'), quality=80); add('lossy.webp')
    Image.fromarray(noise).save(os.path.join(outdir, 'lossy_noise.webp'), quality=60); add('lossy_noise.webp')
    Image.fromarray(rgba).save(os.path.join(outdir, 'lossy_alpha.webp'), quality=80); add('lossy_alpha.webp')
    Image.fromarray(rgb).save(os.path.join(outdir, 'lossless.webp'), lossless=True); add('lossless.webp')
    Image.fromarray(rgba).save(os.path.join(outdir, 'lossless_alpha.webp'), lossless=True)
    add('lossless_alpha.webp')
    Image.fromarray(rgba).save(os.path.join(outdir, 'lossless_alpha_exact.webp'), lossless=True, exact=True)
    add('lossless_alpha_exact.webp')
    frame0 = rgba.copy()
    frame0[:, :9, 3] = 0  # transparent columns: the encoder may crop the first frame
    frames = [Image.fromarray(frame0)] + [Image.fromarray(np.roll(rgba, 5 * k, axis=1)) for k in (1, 2)]
    frames[0].save(os.path.join(outdir, 'animated.webp'), save_all=True, append_images=frames[1:], duration=100,
                   loop=0, lossless=False, quality=70)
    add('animated.webp')
    frames = [Image.fromarray(rgb), Image.fromarray(255 - rgb)]
    frames[0].save(os.path.join(outdir, 'animated_lossless.webp'), save_all=True, append_images=frames[1:],
                   duration=50, lossless=True)
    add('animated_lossless.webp')
    web = open(os.path.join(outdir, 'lossy_noise.webp'), 'rb').read()
    webl = open(os.path.join(outdir, 'lossless_alpha.webp'), 'rb').read()
    write('cut_half.webp', web[:len(web) // 2]); add('cut_half.webp')
    write('cut_last_byte.webp', web[:-1]); add('cut_last_byte.webp')
    write('cut_lossless.webp', webl[:len(webl) * 3 // 4]); add('cut_lossless.webp')
    write('header_only.webp', web[:30]); add('header_only.webp')
    bad = bytearray(web)
    for k in range(60, len(web) - 4, 31):
        bad[k] ^= 0x5A
    write('corrupt.webp', bytes(bad)); add('corrupt.webp')
    gif = Image.fromarray((rgb[:, :, 0] > 128).astype(np.uint8), 'P')
    gif.putpalette([200, 10, 20, 5, 250, 7] + [0] * 762)
    gif.save(os.path.join(outdir, 'transparent.gif'), transparency=0)
    add('transparent.gif', 'gif_transparent')
    Image.new('CMYK', (40, 30), (10, 200, 30, 40)).save(os.path.join(outdir, 'cmyk.jpg'))
    for f in files:
        try:
            im = Image.open(os.path.join(outdir, f['name']))
            f.update(format=im.format, mode=im.mode, width=im.size[0], height=im.size[1],
                     orientation=im.getexif().get(0x0112, 0), frames=getattr(im, 'n_frames', 1))
            np.asarray(im.convert('RGB')).tofile(os.path.join(outdir, f['name'] + '.u8'))
            f['pil'] = 'ok'
        except Exception as e:  # PIL refuses it: so must the C++ decoder
            f['pil'] = '%s: %s' % (type(e).__name__, e)
    json.dump(files, open(os.path.join(outdir, 'manifest.json'), 'w'))

def cmd_readst(path, outdir):  # a .safetensors file parsed by hand: u64 LE header length, JSON, data
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    header = json.loads(b[8:8 + n])
    t = header['pixel_values']
    begin, end = t['data_offsets']
    open(os.path.join(outdir, 'pixel_values.f32'), 'wb').write(b[8 + n + begin:8 + n + end])
    json.dump({'names': sorted(k for k in header if k != '__metadata__'), 'dtype': t['dtype'], 'shape': t['shape'],
               'nbytes': end - begin, 'file_bytes': len(b) - 8 - n, 'metadata': header.get('__metadata__', {})},
              open(os.path.join(outdir, 'st.json'), 'w'))

cmd = sys.argv[1]
if cmd == 'pipeline':
    cmd_pipeline(sys.argv[2], sys.argv[3], [int(s) for s in sys.argv[4].split(',')])
elif cmd == 'resize':
    cmd_resize(sys.argv[2], sys.argv[3])
elif cmd == 'sizes':
    cmd_sizes(sys.argv[2])
elif cmd == 'crop':
    cmd_crop(sys.argv[2], sys.argv[3])
elif cmd == 'synth':
    cmd_synth(sys.argv[2])
elif cmd == 'readst':
    cmd_readst(sys.argv[2], sys.argv[3])
else:
    sys.exit('unknown subcommand ' + cmd)
)PY";

const char* kPython = "/usr/bin/python3";

// A scratch folder (test::scratch_dir) removed when the owner goes: the reference arrays
// of all real images take about 200 MB.
struct ScratchDir {
  explicit ScratchDir(const std::string& name) : path(test::scratch_dir(name)) {}
  ~ScratchDir() {
    std::error_code ignored;
    fs::remove_all(path, ignored);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string path;
};

std::string quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs the reference script with `args`; throws (failing the test) with its stderr when
// it fails, e.g. because PIL or numpy is not installed.
void run_reference(const std::string& args) {
  static const ScratchDir folder("image-ref");
  static const std::string script = [] {
    std::string path = folder.path + "/reference.py";
    test::write_file(path, kReferenceScript);
    return path;
  }();
  test::CommandResult r = test::run_command(std::string(kPython) + " " + quote(script) + " " + args);
  if (r.exit_code != 0)
    throw std::runtime_error("python reference failed (exit " + std::to_string(r.exit_code) +
                             "; PIL and numpy are needed: bash scripts/install-deps.sh):\n" + r.err);
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
  std::string s = test::read_file(path);
  return std::vector<std::uint8_t>(s.begin(), s.end());
}

std::vector<float> read_floats(const std::string& path) {
  std::string s = test::read_file(path);
  std::vector<float> v(s.size() / sizeof(float));
  std::memcpy(v.data(), s.data(), v.size() * sizeof(float));
  return v;
}

// Runs `fn` and returns the reason code of the ImageError it throws ("" when none); the
// message goes to *message.
template <typename Fn>
std::string reason_of(Fn fn, std::string* message = nullptr) {
  try {
    fn();
  } catch (const ImageError& e) {
    if (message) *message = e.what();
    return e.reason_code;
  }
  return "";
}

std::size_t count_differences(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  std::size_t n = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) n += a[i] != b[i];
  return n + std::max(a.size(), b.size()) - std::min(a.size(), b.size());
}

float max_abs_difference(const float* a, const float* b, std::size_t n) {
  float m = 0;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// Every real image under shared/data/images, sorted.
std::vector<std::string> real_images() {
  std::vector<std::string> paths;
  for (const auto& e : fs::recursive_directory_iterator(test::shared_path("data/images")))
    if (e.is_regular_file()) paths.push_back(e.path().string());
  std::sort(paths.begin(), paths.end());
  return paths;
}

const std::vector<int> kSizes = {336, 224, 97};  // CLIP-336, CLIP-224, an odd size

// The reference pipeline run once over every real image.
struct RealReference {
  ScratchDir folder{"image-real"};
  std::string dir = folder.path;
  std::vector<std::string> paths;
  json manifest;
};

const RealReference& real_reference() {
  static RealReference ref;  // filled once; a failed run is retried by the next test
  static bool done = false;
  if (!done) {
    RealReference& r = ref;
    r.paths = real_images();
    std::string list;
    for (const std::string& p : r.paths) list += p + "\n";
    test::write_file(r.dir + "/list.txt", list);
    run_reference("pipeline " + quote(r.dir + "/list.txt") + " " + quote(r.dir) + " 336,224,97");
    r.manifest = json::parse(test::read_file(r.dir + "/manifest.json"));
    done = true;
  }
  return ref;
}

RgbImage reference_decoded(const RealReference& ref, std::size_t i) {
  RgbImage image;
  image.width = ref.manifest[i]["width"];
  image.height = ref.manifest[i]["height"];
  image.pixels = read_bytes(ref.dir + "/dec_" + std::to_string(i) + ".u8");
  return image;
}

RgbImage decode_rgb8_file(const std::string& path) {
  const std::vector<std::uint8_t> bytes = read_image_file(path);
  return decode_rgb8(bytes.data(), bytes.size(), path);
}

TEST(ImagePreprocess, PythonReferenceIsInstalled) {
  test::CommandResult r = test::run_command(std::string(kPython) + " -c 'import PIL, numpy; print(PIL.__version__)'");
  ASSERT_EQ(r.exit_code, 0) << "the reference needs /usr/bin/python3 with PIL and numpy "
                               "(Debian python3-pil python3-numpy: bash scripts/install-deps.sh)\n"
                            << r.err;
  std::cout << "[ reference ] Pillow " << r.out;
}

// The heart of it: from PIL's decoded pixels, every step equals PIL + transformers.
TEST(ImagePreprocess, EveryRealImageMatchesPilAfterDecodingInBothModes) {
  const RealReference& ref = real_reference();
  ASSERT_EQ(ref.manifest.size(), ref.paths.size());
  ASSERT_GE(ref.paths.size(), 37u) << "shared/data/images should hold the LLaVA demo photos, CLIP.png, "
                                      "30 RLAIF-V photos and 4 clip336 PNGs";
  std::size_t bytes_compared = 0, floats_compared = 0;
  float worst = 0;
  for (std::size_t i = 0; i < ref.paths.size(); ++i) {
    SCOPED_TRACE(ref.paths[i]);
    const RgbImage decoded = reference_decoded(ref, i);
    ASSERT_EQ(decoded.pixels.size(), static_cast<std::size_t>(decoded.width) * decoded.height * 3);
    for (int size : kSizes)
      for (AspectMode aspect : {AspectMode::pad, AspectMode::square}) {
        const std::string tag = std::string(aspect_mode_name(aspect)) + "_" + std::to_string(size);
        SCOPED_TRACE(tag);
        ImageSpec spec;
        spec.size = size;
        spec.aspect = aspect;
        std::uint8_t colour[3];
        pad_colour(spec, colour);
        const RgbImage squared = aspect == AspectMode::pad ? expand_to_square(decoded, colour) : decoded;
        const RgbImage resized = resize_shortest_side(squared, size);
        const json& want_size = ref.manifest[i]["resized"][tag];
        ASSERT_EQ(resized.width, want_size[0].get<int>());
        ASSERT_EQ(resized.height, want_size[1].get<int>());
        const std::string suffix = tag + "_" + std::to_string(i);
        EXPECT_EQ(count_differences(resized.pixels, read_bytes(ref.dir + "/rs_" + suffix + ".u8")), 0u)
            << "uint8 resize differs from PIL's";
        bytes_compared += resized.pixels.size();

        const std::vector<float> want = read_floats(ref.dir + "/px_" + suffix + ".f32");
        ASSERT_EQ(want.size(), static_cast<std::size_t>(3 * size * size));
        std::vector<float> steps(want.size()), fused(want.size());
        normalize_to_chw(center_crop(resized, size, size), spec.mean, spec.std, steps.data());
        preprocess_rgb(decoded, spec, fused.data());
        const float d1 = max_abs_difference(steps.data(), want.data(), want.size());
        const float d2 = max_abs_difference(fused.data(), want.data(), want.size());
        EXPECT_LE(d1, 1e-6f);
        EXPECT_LE(d2, 1e-6f) << "resize+crop in one pass differs";
        worst = std::max({worst, d1, d2});
        floats_compared += 2 * want.size();
      }
  }
  std::cout << "[ stats ] " << ref.paths.size() << " real images x 2 aspect modes x " << kSizes.size()
            << " sizes: " << bytes_compared << " resized uint8 values equal to PIL's, " << floats_compared
            << " floats with max |diff| " << worst << "\n";
}

TEST(ImagePreprocess, RealImagesDecodeLikePil) {
  const RealReference& ref = real_reference();
  int png = 0, jpeg = 0, webp = 0, progressive = 0;
  std::size_t values = 0;
  for (std::size_t i = 0; i < ref.paths.size(); ++i) {
    SCOPED_TRACE(ref.paths[i]);
    const std::string format = ref.manifest[i]["format"];
    const std::vector<std::uint8_t> bytes = read_image_file(ref.paths[i]);
    const ImageHeader header = read_image_header(bytes.data(), bytes.size(), ref.paths[i]);
    const RgbImage mine = decode_rgb8(bytes.data(), bytes.size(), ref.paths[i]);
    const RgbImage want = reference_decoded(ref, i);
    ASSERT_EQ(mine.width, want.width);
    ASSERT_EQ(mine.height, want.height);
    EXPECT_EQ(header.width, want.width);
    EXPECT_EQ(header.height, want.height);
    EXPECT_EQ(count_differences(mine.pixels, want.pixels), 0u) << format << " decodes differently from PIL";
    values += want.pixels.size();
    if (format == "PNG") {
      EXPECT_EQ(header.format, "png");
      ++png;
    } else if (format == "JPEG") {
      EXPECT_EQ(header.format, "jpeg");
      ++jpeg;
      progressive += ref.manifest[i]["progressive"].get<int>();
    } else {
      ASSERT_EQ(format, "WEBP");  // three RLAIF-V ".jpg" files are WebP
      EXPECT_EQ(header.format, "webp");
      ++webp;
    }
  }
  EXPECT_GT(png, 0);
  EXPECT_GT(jpeg, 0);
  EXPECT_GE(webp, 3);
  EXPECT_GT(progressive, 0);
  std::cout << "[ stats ] decode vs PIL: " << png << " PNG, " << jpeg << " JPEG (" << progressive
            << " progressive), " << webp << " WebP: " << values << " uint8 values, all identical\n";
}

// The whole pipeline from the file's bytes (decode included) against PIL + transformers:
// every real image, both aspect modes, every size.
TEST(ImagePreprocess, RealImagesEndToEndFromFilesExactly) {
  const RealReference& ref = real_reference();
  std::size_t bytes_compared = 0, byte_differences = 0, floats_compared = 0, float_differences = 0;
  float worst = 0;
  for (std::size_t i = 0; i < ref.paths.size(); ++i) {
    SCOPED_TRACE(ref.paths[i]);
    const RgbImage decoded = decode_rgb8_file(ref.paths[i]);
    for (int size : kSizes)
      for (AspectMode aspect : {AspectMode::pad, AspectMode::square}) {
        const std::string tag = std::string(aspect_mode_name(aspect)) + "_" + std::to_string(size);
        SCOPED_TRACE(tag);
        ImageSpec spec;
        spec.size = size;
        spec.aspect = aspect;
        std::uint8_t colour[3];
        pad_colour(spec, colour);
        const RgbImage resized =
            resize_shortest_side(aspect == AspectMode::pad ? expand_to_square(decoded, colour) : decoded, size);
        const std::string suffix = tag + "_" + std::to_string(i);
        const std::size_t d = count_differences(resized.pixels, read_bytes(ref.dir + "/rs_" + suffix + ".u8"));
        EXPECT_EQ(d, 0u) << "uint8 resize of the decoded file differs from PIL's";
        byte_differences += d;
        bytes_compared += resized.pixels.size();

        const std::vector<float> want = read_floats(ref.dir + "/px_" + suffix + ".f32");
        std::vector<float> mine(want.size());
        preprocess_image_file(ref.paths[i], spec, mine.data());
        const float m = max_abs_difference(mine.data(), want.data(), want.size());
        std::size_t differing = 0;
        for (std::size_t k = 0; k < want.size(); ++k) differing += mine[k] != want[k];
        EXPECT_EQ(differing, 0u) << "pixel_values differ from PIL + transformers (max |diff| " << m << ")";
        worst = std::max(worst, m);
        float_differences += differing;
        floats_compared += want.size();
      }
  }
  std::cout << "[ stats ] file -> pixel_values vs PIL + transformers: " << ref.paths.size()
            << " real images x 2 aspect modes x " << kSizes.size() << " sizes: " << byte_differences << " of "
            << bytes_compared << " resized uint8 values differ, " << float_differences << " of " << floats_compared
            << " floats differ, max |diff| " << worst << "\n";
}

TEST(ImagePreprocess, PadBandIsTheClipMeanColour) {
  ImageSpec spec;
  std::uint8_t colour[3];
  pad_colour(spec, colour);
  EXPECT_EQ(colour[0], 122);
  EXPECT_EQ(colour[1], 116);
  EXPECT_EQ(colour[2], 104);
  const RealReference& ref = real_reference();
  int checked = 0;
  for (std::size_t i = 0; i < ref.paths.size(); ++i) {
    const RgbImage image = reference_decoded(ref, i);
    if (image.width == image.height) continue;
    SCOPED_TRACE(ref.paths[i]);
    ++checked;
    const RgbImage sq = expand_to_square(image, colour);
    const int side = std::max(image.width, image.height);
    ASSERT_EQ(sq.width, side);
    ASSERT_EQ(sq.height, side);
    const int left = (side - image.width) / 2, top = (side - image.height) / 2;
    std::size_t band = 0, wrong = 0, moved = 0;
    for (int y = 0; y < side; ++y)
      for (int x = 0; x < side; ++x) {
        const std::uint8_t* p = &sq.pixels[(std::size_t(y) * side + x) * 3];
        const bool inside = x >= left && x < left + image.width && y >= top && y < top + image.height;
        if (!inside) {
          ++band;
          wrong += p[0] != 122 || p[1] != 116 || p[2] != 104;
        } else {
          moved += std::memcmp(p, &image.pixels[(std::size_t(y - top) * image.width + (x - left)) * 3], 3) != 0;
        }
      }
    EXPECT_EQ(band, std::size_t(side) * side - std::size_t(image.width) * image.height);
    EXPECT_EQ(wrong, 0u);
    EXPECT_EQ(moved, 0u);
    // After the resize the band stays exactly the mean colour away from the image edge
    // (beyond the filter's reach), and normalises to (int(255 m) / 255 - m) / s.
    std::vector<float> out(3 * 336 * 336);
    preprocess_rgb(image, spec, out.data());
    const double scale = 336.0 / side;
    const int band_px = static_cast<int>(std::floor((image.width < image.height ? left : top) * scale)) - 3;
    for (int c = 0; c < 3; ++c) {
      const float want = (static_cast<float>(colour[c] * (1.0 / 255.0)) - spec.mean[c]) / spec.std[c];
      for (int k = 0; k < band_px; ++k)
        for (int j = 0; j < 336; ++j) {
          const int y = image.width < image.height ? j : k, x = image.width < image.height ? k : j;
          ASSERT_EQ(out[c * 336 * 336 + y * 336 + x], want) << "channel " << c << " at (" << x << ", " << y << ")";
        }
    }
  }
  EXPECT_GT(checked, 25);
}

TEST(ImagePreprocess, ShapesAndRanges) {
  const RealReference& ref = real_reference();
  for (std::size_t i = 0; i < ref.paths.size(); i += 5) {
    const RgbImage image = reference_decoded(ref, i);
    for (int size : {336, 224, 1}) {
      ImageSpec spec;
      spec.size = size;
      spec.aspect = AspectMode::square;
      std::vector<float> out(3 * size * size + 1, 12345.0f);  // one guard value past the end
      preprocess_rgb(image, spec, out.data());
      EXPECT_EQ(out.back(), 12345.0f) << "wrote past 3 * size * size floats";
      for (int c = 0; c < 3; ++c) {
        const float lo = (0.0f - spec.mean[c]) / spec.std[c], hi = (1.0f - spec.mean[c]) / spec.std[c];
        for (int k = 0; k < size * size; ++k) {
          const float v = out[c * size * size + k];
          ASSERT_TRUE(v >= lo && v <= hi) << v << " outside [" << lo << ", " << hi << "]";
        }
      }
    }
  }
  std::int64_t w = 0, h = 0;
  shortest_side_size(1920, 1080, 336, &w, &h);
  EXPECT_EQ(w, 597);  // int(336 * 1920 / 1080) = int(597.33)
  EXPECT_EQ(h, 336);
  shortest_side_size(1080, 1920, 336, &w, &h);
  EXPECT_EQ(w, 336);
  EXPECT_EQ(h, 597);
  EXPECT_EQ(aspect_mode_from_name("square"), AspectMode::square);
  EXPECT_THROW(aspect_mode_from_name("anyres"), std::invalid_argument);
}

TEST(ImagePreprocess, ShortestSideSizeFollowsTransformers) {
  const ScratchDir scratch("image-sizes");
  const std::string& dir = scratch.path;
  run_reference("sizes " + quote(dir + "/sizes.i64"));
  const std::string raw = test::read_file(dir + "/sizes.i64");
  const std::size_t rows = raw.size() / (5 * sizeof(std::int64_t));
  ASSERT_GT(rows, 400000u);
  std::vector<std::int64_t> v(rows * 5);
  std::memcpy(v.data(), raw.data(), v.size() * sizeof(std::int64_t));
  std::size_t wrong = 0;
  for (std::size_t r = 0; r < rows; ++r) {
    std::int64_t w = 0, h = 0;
    shortest_side_size(v[r * 5], v[r * 5 + 1], v[r * 5 + 2], &w, &h);
    if (w != v[r * 5 + 3] || h != v[r * 5 + 4]) {
      if (++wrong < 10)
        ADD_FAILURE() << v[r * 5] << "x" << v[r * 5 + 1] << " size " << v[r * 5 + 2] << ": got " << w << "x" << h
                      << ", transformers " << v[r * 5 + 3] << "x" << v[r * 5 + 4];
    }
  }
  EXPECT_EQ(wrong, 0u) << "of " << rows;
}

TEST(ImagePreprocess, CenterCropFollowsTransformersIncludingPadding) {
  const ScratchDir scratch("image-crop");
  const std::string& dir = scratch.path;
  const json cases = json::array({{{"w", 10}, {"h", 8}, {"cw", 4}, {"ch", 3}},
                                  {{"w", 11}, {"h", 9}, {"cw", 4}, {"ch", 4}},
                                  {{"w", 597}, {"h", 336}, {"cw", 336}, {"ch", 336}},
                                  {{"w", 336}, {"h", 598}, {"cw", 336}, {"ch", 336}},
                                  {{"w", 3}, {"h", 5}, {"cw", 6}, {"ch", 8}},    // padded both ways
                                  {{"w", 4}, {"h", 7}, {"cw", 7}, {"ch", 2}},    // padded in x, cut in y
                                  {{"w", 1}, {"h", 1}, {"cw", 4}, {"ch", 5}},
                                  {{"w", 9}, {"h", 9}, {"cw", 9}, {"ch", 9}}});
  test::write_file(dir + "/cases.json", cases.dump());
  run_reference("crop " + quote(dir + "/cases.json") + " " + quote(dir));
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].dump());
    RgbImage image;
    image.width = cases[i]["w"];
    image.height = cases[i]["h"];
    image.pixels = read_bytes(dir + "/src_" + std::to_string(i) + ".u8");
    const RgbImage out = center_crop(image, cases[i]["cw"], cases[i]["ch"]);
    EXPECT_EQ(out.width, cases[i]["cw"].get<int>());
    EXPECT_EQ(out.height, cases[i]["ch"].get<int>());
    EXPECT_EQ(count_differences(out.pixels, read_bytes(dir + "/dst_" + std::to_string(i) + ".u8")), 0u);
  }
}

TEST(ImageResample, MatchesPilResizeOnASweepOfSizes) {
  struct Case {
    int w, h, dw, dh;
    const char* mode;
    const char* pattern;
  };
  const std::vector<Case> cases = {
      {1, 1, 1, 1, "RGB", "noise"},          {1, 1, 5, 3, "RGB", "noise"},
      {1, 1, 336, 336, "RGB", "noise"},      {1, 7, 3, 1, "RGB", "noise"},
      {7, 1, 1, 7, "L", "noise"},            {2, 2, 1, 1, "RGB", "noise"},
      {3, 5, 7, 11, "RGB", "noise"},         {13, 11, 5, 4, "L", "noise"},
      {17, 19, 1000, 1001, "RGB", "checker"}, {640, 480, 448, 336, "RGB", "noise"},
      {640, 480, 448, 336, "RGB", "checker"}, {1920, 1080, 597, 336, "RGB", "noise"},
      {1080, 1920, 336, 597, "RGB", "gradient"}, {1920, 1920, 336, 336, "RGB", "checker"},
      {333, 777, 101, 999, "RGB", "noise"},  {999, 3, 17, 5, "L", "noise"},
      {336, 336, 336, 336, "RGB", "noise"},  {500, 336, 336, 336, "RGB", "noise"},   // horizontal only
      {336, 500, 336, 224, "RGB", "checker"}, {40, 4000, 40, 7, "L", "noise"},       // vertical only
      {255, 257, 254, 258, "RGB", "noise"},  {4000, 30, 2, 2, "RGB", "gradient"},
      {337, 336, 336, 336, "RGB", "noise"},  {100, 100, 3, 333, "RGB", "checker"},
  };
  json spec = json::array();
  for (std::size_t i = 0; i < cases.size(); ++i)
    spec.push_back({{"w", cases[i].w}, {"h", cases[i].h}, {"dw", cases[i].dw}, {"dh", cases[i].dh},
                    {"mode", cases[i].mode}, {"pattern", cases[i].pattern}, {"seed", int(i)}});
  const ScratchDir scratch("image-resize");
  const std::string& dir = scratch.path;
  test::write_file(dir + "/cases.json", spec.dump());
  run_reference("resize " + quote(dir + "/cases.json") + " " + quote(dir));
  std::size_t compared = 0;
  for (std::size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(spec[i].dump());
    const int channels = std::string(c.mode) == "L" ? 1 : 3;
    const std::vector<std::uint8_t> src = read_bytes(dir + "/src_" + std::to_string(i) + ".u8");
    const std::vector<std::uint8_t> want = read_bytes(dir + "/dst_" + std::to_string(i) + ".u8");
    ASSERT_EQ(src.size(), std::size_t(c.w) * c.h * channels);
    std::vector<std::uint8_t> got(std::size_t(c.dw) * c.dh * channels);
    resample_bicubic_u8(src.data(), c.w, c.h, channels, got.data(), c.dw, c.dh);
    EXPECT_EQ(count_differences(got, want), 0u);
    compared += got.size();
    // A window of the resize equals the same window cut from the full result.
    const int ww = std::max(1, c.dw / 2), wh = std::max(1, c.dh / 3), wx = (c.dw - ww) / 2, wy = c.dh - wh;
    std::vector<std::uint8_t> window(std::size_t(ww) * wh * channels);
    resample_bicubic_u8_window(src.data(), c.w, c.h, channels, c.dw, c.dh, wx, wy, ww, wh, window.data());
    std::size_t wrong = 0;
    for (int y = 0; y < wh; ++y)
      wrong += std::memcmp(&window[std::size_t(y) * ww * channels],
                           &want[(std::size_t(wy + y) * c.dw + wx) * channels], std::size_t(ww) * channels) != 0;
    EXPECT_EQ(wrong, 0u) << "window " << ww << "x" << wh << " at (" << wx << ", " << wy << ")";
  }
  std::cout << "[ stats ] resize kernel: " << cases.size() << " size pairs, " << compared
            << " uint8 values equal to PIL's\n";
  std::vector<std::uint8_t> px(3);
  EXPECT_THROW(resample_bicubic_u8(px.data(), 0, 1, 3, px.data(), 1, 1), std::invalid_argument);
  EXPECT_THROW(resample_bicubic_u8_window(px.data(), 1, 1, 3, 4, 4, 2, 2, 3, 3, px.data()), std::invalid_argument);
}

TEST(ImagePreprocess, SyntheticFormatsDecodeLikePil) {
  const ScratchDir scratch("image-synth");
  const std::string& dir = scratch.path;
  run_reference("synth " + quote(dir));
  const json manifest = json::parse(test::read_file(dir + "/manifest.json"));
  ASSERT_GE(manifest.size(), 40u);
  std::size_t decoded = 0, refused = 0, webp = 0, jpeg = 0, animated = 0;
  for (const json& f : manifest) {
    const std::string name = f["name"];
    const std::vector<std::uint8_t> bytes = read_bytes(dir + "/" + name);
    if (f["pil"] != "ok") {
      // PIL raises on it (truncated, corrupt): the C++ decoder refuses it too.
      SCOPED_TRACE(name + " (PIL: " + f["pil"].get<std::string>() + ")");
      std::string message;
      EXPECT_EQ(reason_of([&] { decode_rgb8(bytes.data(), bytes.size(), name); }, &message), "unreadable");
      std::cout << "[ refused ] " << name << ": PIL " << f["pil"].get<std::string>() << "; here " << message << "\n";
      ++refused;
      continue;
    }
    SCOPED_TRACE(name + " (PIL " + f["format"].get<std::string>() + " mode " + f["mode"].get<std::string>() + ")");
    RgbImage mine;
    try {
      mine = decode_rgb8(bytes.data(), bytes.size(), name);
    } catch (const ImageError& e) {
      ADD_FAILURE() << "PIL decodes it, here refused: " << e.reason_code << " " << e.what();
      continue;
    }
    const std::vector<std::uint8_t> want = read_bytes(dir + "/" + name + ".u8");
    ASSERT_EQ(mine.width, f["width"].get<int>());
    ASSERT_EQ(mine.height, f["height"].get<int>());
    ++decoded;
    jpeg += f["format"] == "JPEG";
    webp += f["format"] == "WEBP";
    animated += f["frames"].get<int>() > 1;
    if (f["how"] == "exact") {
      EXPECT_EQ(count_differences(mine.pixels, want), 0u);
    } else if (f["how"] == "gif_transparent") {
      // The documented difference: stb_image leaves transparent pixels black, PIL shows
      // their palette colour (200, 10, 20 here); every other pixel is the same.
      std::size_t transparent = 0, wrong = 0;
      for (std::size_t k = 0; k < want.size(); k += 3) {
        const bool t = want[k] == 200 && want[k + 1] == 10 && want[k + 2] == 20;
        transparent += t;
        wrong += t ? (mine.pixels[k] | mine.pixels[k + 1] | mine.pixels[k + 2]) != 0
                   : std::memcmp(&mine.pixels[k], &want[k], 3) != 0;
      }
      EXPECT_GT(transparent, 0u);
      EXPECT_EQ(wrong, 0u);
    } else {
      ADD_FAILURE() << "unknown comparison " << f["how"];
    }
  }
  EXPECT_GE(jpeg, 10u);
  EXPECT_GE(webp, 8u);
  EXPECT_EQ(animated, 2u);
  EXPECT_GE(refused, 5u);  // at least the cut JPEGs and WebPs
  std::cout << "[ stats ] synthetic files: " << decoded << " decoded exactly as PIL (" << jpeg << " JPEG, " << webp
            << " WebP, " << animated << " animated), " << refused << " refused as PIL refuses them\n";
  // EXIF orientation 6 is in the file but not applied (the size above is the stored one).
  int exif_checked = 0;
  for (const json& f : manifest)
    if (f["name"] == "exif6.jpg") exif_checked += f["orientation"] == 6;
  EXPECT_EQ(exif_checked, 1);
  // PIL's reading of 16-bit grey: the value clamped to 255, not its high byte.
  const std::vector<std::uint8_t> g16 = read_bytes(dir + "/grey16.png");
  const RgbImage grey = decode_rgb8(g16.data(), g16.size(), "grey16.png");
  std::size_t white = 0;
  for (std::uint8_t v : grey.pixels) white += v == 255;
  EXPECT_GT(white, grey.pixels.size() / 3);
  // CMYK JPEG made by PIL: refused before decoding.
  const std::vector<std::uint8_t> cmyk = read_bytes(dir + "/cmyk.jpg");
  std::string message;
  EXPECT_EQ(reason_of([&] { decode_rgb8(cmyk.data(), cmyk.size(), "cmyk.jpg"); }, &message), "cmyk");
  EXPECT_NE(message.find("cmyk.jpg: CMYK JPEG not supported"), std::string::npos) << message;
}

// A PNG whose IHDR announces width x height, with no pixel data after it.
std::vector<std::uint8_t> png_header(std::uint32_t width, std::uint32_t height) {
  std::vector<std::uint8_t> b = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  for (std::uint32_t v : {width, height})
    for (int s = 24; s >= 0; s -= 8) b.push_back(std::uint8_t(v >> s));
  for (std::uint8_t v : {8, 2, 0, 0, 0, 0, 0, 0, 0}) b.push_back(v);  // depth, RGB, methods, (CRC)
  return b;
}

// A BMP file and info header announcing width x height, 24 bits, no pixel data.
std::vector<std::uint8_t> bmp_header(std::uint32_t width, std::uint32_t height) {
  std::vector<std::uint8_t> b(54, 0);
  b[0] = 'B';
  b[1] = 'M';
  b[10] = 54;  // pixel data offset
  b[14] = 40;  // BITMAPINFOHEADER
  for (int k = 0; k < 4; ++k) {
    b[18 + k] = std::uint8_t(width >> (8 * k));
    b[22 + k] = std::uint8_t(height >> (8 * k));
  }
  b[26] = 1;   // planes
  b[28] = 24;  // bits per pixel
  return b;
}

// A WebP file of one chunk `fourcc` with `payload`, the RIFF sizes consistent.
std::vector<std::uint8_t> webp_file(const char* fourcc, std::vector<std::uint8_t> payload) {
  auto le32 = [](std::vector<std::uint8_t>* b, std::uint32_t v) {
    for (int s = 0; s < 32; s += 8) b->push_back(std::uint8_t(v >> s));
  };
  const std::uint32_t chunk = static_cast<std::uint32_t>(payload.size());
  if (payload.size() % 2) payload.push_back(0);  // RIFF chunks are padded to even sizes
  std::vector<std::uint8_t> b = {'R', 'I', 'F', 'F'};
  le32(&b, static_cast<std::uint32_t>(4 + 8 + payload.size()));
  for (const char* tag : {"WEBP", fourcc}) b.insert(b.end(), tag, tag + 4);
  le32(&b, chunk);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

// Lossless (VP8L) header announcing width x height (each 1..16384), no image data.
std::vector<std::uint8_t> webp_lossless_header(std::uint32_t width, std::uint32_t height) {
  const std::uint64_t bits = std::uint64_t(width - 1) | (std::uint64_t(height - 1) << 14);  // no alpha, version 0
  return webp_file("VP8L", {0x2F, std::uint8_t(bits), std::uint8_t(bits >> 8), std::uint8_t(bits >> 16),
                            std::uint8_t(bits >> 24)});
}

// Lossy (VP8) key-frame header announcing width x height (each 1..16383), no image data.
std::vector<std::uint8_t> webp_lossy_header(std::uint32_t width, std::uint32_t height) {
  return webp_file("VP8 ", {0x10, 0, 0, 0x9D, 0x01, 0x2A, std::uint8_t(width), std::uint8_t(width >> 8),
                            std::uint8_t(height), std::uint8_t(height >> 8)});
}

// Extended (VP8X) header of an animation on a width x height canvas (each 1..2^24).
std::vector<std::uint8_t> webp_animation_header(std::uint32_t width, std::uint32_t height) {
  const std::uint32_t w = width - 1, h = height - 1;
  return webp_file("VP8X", {0x02, 0, 0, 0, std::uint8_t(w), std::uint8_t(w >> 8), std::uint8_t(w >> 16),
                            std::uint8_t(h), std::uint8_t(h >> 8), std::uint8_t(h >> 16)});
}

TEST(ImagePreprocess, BadInputsGiveTheirReasonCodes) {
  const std::string jpg = test::shared_path("data/images/extreme_ironing.jpg");
  const std::vector<std::uint8_t> good = read_image_file(jpg);
  const std::vector<std::uint8_t> png = read_image_file(test::shared_path("data/images/CLIP.png"));
  auto reason = [](const std::vector<std::uint8_t>& bytes, std::uint64_t max_pixels = 64'000'000,
                   std::string* message = nullptr) {
    return reason_of([&] { decode_rgb8(bytes.data(), bytes.size(), "bad.img", max_pixels); }, message);
  };
  std::string message;
  EXPECT_EQ(reason(std::vector<std::uint8_t>(), 64'000'000, &message), "empty");
  EXPECT_EQ(message, "bad.img: empty file (0 bytes)");
  const std::string text = "This is a text file, not an image.\n";
  EXPECT_EQ(reason(std::vector<std::uint8_t>(text.begin(), text.end())), "unsupported_format");
  EXPECT_EQ(reason(std::vector<std::uint8_t>(good.begin(), good.begin() + good.size() / 2), 64'000'000, &message),
            "unreadable");
  EXPECT_NE(message.find("bad.img: cannot decode jpeg"), std::string::npos) << message;
  EXPECT_EQ(reason(std::vector<std::uint8_t>(good.begin(), good.end() - 2)), "unreadable");  // no EOI, as PIL
  EXPECT_EQ(reason(std::vector<std::uint8_t>(good.begin(), good.begin() + 300)), "unreadable");
  EXPECT_EQ(reason(std::vector<std::uint8_t>(png.begin(), png.begin() + png.size() / 2)), "unreadable");
  EXPECT_EQ(reason(std::vector<std::uint8_t>(png.begin(), png.begin() + 20)), "unreadable");
  EXPECT_EQ(reason(png_header(100000, 100000), 64'000'000, &message), "too_large");
  EXPECT_NE(message.find("100000x100000 = 10000000000 pixels"), std::string::npos) << message;
  EXPECT_EQ(reason(bmp_header(100000, 100000)), "too_large");
  EXPECT_EQ(reason(png_header(0, 5)), "unreadable");
  EXPECT_EQ(reason(good, 1000), "too_large");  // a real 570x380 photo under a small bound

  // WebP (a real one, named .jpg, decodes; see RealImagesDecodeLikePil).
  const std::vector<std::uint8_t> webp =
      read_image_file(test::shared_path("data/images/rlaifv/multimodal_self-rewarding_0222_qa__Victoria_Falls.jpg"));
  EXPECT_EQ(reason(webp), "");
  EXPECT_EQ(reason(webp, 768 * 432 - 1, &message), "too_large");  // 768x432, checked from the header
  EXPECT_NE(message.find("webp of 768x432 = 331776 pixels"), std::string::npos) << message;
  EXPECT_EQ(reason(std::vector<std::uint8_t>(webp.begin(), webp.begin() + webp.size() / 2), 64'000'000, &message),
            "unreadable");
  EXPECT_NE(message.find("bad.img: cannot decode webp"), std::string::npos) << message;
  EXPECT_EQ(reason(std::vector<std::uint8_t>(webp.begin(), webp.end() - 1)), "unreadable");
  EXPECT_EQ(reason(std::vector<std::uint8_t>(webp.begin(), webp.begin() + 20)), "unreadable");
  EXPECT_EQ(reason(std::vector<std::uint8_t>(webp.begin(), webp.begin() + 16)), "unreadable");
  EXPECT_EQ(reason(webp_lossless_header(16384, 16384), 64'000'000, &message), "too_large");
  EXPECT_NE(message.find("16384x16384 = 268435456 pixels"), std::string::npos) << message;
  EXPECT_EQ(reason(webp_lossy_header(16383, 16383)), "too_large");
  EXPECT_EQ(reason(webp_animation_header(10000, 10000), 64'000'000, &message), "too_large");
  EXPECT_NE(message.find("10000x10000 = 100000000 pixels"), std::string::npos) << message;
  EXPECT_EQ(reason(webp_animation_header(100000, 100000)), "unreadable");  // libwebp: canvas above 2^32 pixels
  EXPECT_EQ(reason(webp_lossless_header(100, 100), 64'000'000, &message), "unreadable");  // no pixel data
  EXPECT_NE(message.find("cannot decode webp"), std::string::npos) << message;
  EXPECT_EQ(reason(webp_lossy_header(100, 100)), "unreadable");
  EXPECT_EQ(reason(webp_animation_header(100, 100)), "unreadable");  // an animation without frames
  EXPECT_EQ(reason(webp_file("JUNK", {1, 2, 3, 4})), "unreadable");
  const char wave[] = "RIFF\x24\0\0\0WAVEfmt ";  // a RIFF file that is not WebP
  EXPECT_EQ(reason(std::vector<std::uint8_t>(wave, wave + sizeof wave - 1)), "unsupported_format");

  // Through the file entry point: the path is named, and a missing file is io.
  std::vector<float> out(3 * 336 * 336);
  ImageSpec spec;
  EXPECT_EQ(reason_of([&] { preprocess_image_file("/nonexistent/x.jpg", spec, out.data()); }, &message), "io");
  EXPECT_NE(message.find("/nonexistent/x.jpg"), std::string::npos);
  const ScratchDir scratch("image-bad");
  const std::string& dir = scratch.path;
  test::write_file(dir + "/empty.jpg", "");
  EXPECT_EQ(reason_of([&] { preprocess_image_file(dir + "/empty.jpg", spec, out.data()); }, &message), "empty");
  EXPECT_EQ(message, dir + "/empty.jpg: empty file (0 bytes)");
}

TEST(ImagePreprocess, CliWritesPixelValuesAsTheLibraryComputes) {
  const std::vector<std::string> images = {
      test::shared_path("data/images/waterview.jpg"), test::shared_path("data/images/CLIP.png"),
      test::shared_path("data/images/rlaifv/multimodal_self-rewarding_0222_qa__000127749.jpg"),
      test::shared_path("data/images/clip336/222_qa__000000032909.png")};
  const ScratchDir scratch("image-cli");
  const std::string& dir = scratch.path;
  for (const char* aspect : {"pad", "square"}) {
    SCOPED_TRACE(aspect);
    const std::string out = dir + "/" + aspect + ".safetensors";
    std::string cmd = test::align2_bin() + " preprocess --aspect " + aspect + " --size 336 --out " + quote(out);
    for (const std::string& p : images) cmd += " " + quote(p);
    test::CommandResult r = test::run_command(cmd);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string read_dir = dir + "/" + aspect;
    fs::create_directories(read_dir);
    run_reference("readst " + quote(out) + " " + quote(read_dir));
    const json st = json::parse(test::read_file(read_dir + "/st.json"));
    EXPECT_EQ(st["names"], json::array({"pixel_values"}));
    EXPECT_EQ(st["dtype"], "F32");
    EXPECT_EQ(st["shape"], json::array({images.size(), 3, 336, 336}));
    EXPECT_EQ(st["metadata"]["aspect"], aspect);
    EXPECT_EQ(st["metadata"]["size"], "336");
    const std::vector<float> got = read_floats(read_dir + "/pixel_values.f32");
    const std::size_t per = 3 * 336 * 336;
    ASSERT_EQ(got.size(), images.size() * per);
    ImageSpec spec;
    spec.aspect = aspect_mode_from_name(aspect);
    for (std::size_t i = 0; i < images.size(); ++i) {
      std::vector<float> want(per);
      preprocess_image_file(images[i], spec, want.data());
      EXPECT_EQ(std::memcmp(want.data(), got.data() + i * per, per * sizeof(float)), 0) << images[i];
    }
  }
  // A bad image among good ones: exit 1, the file and reason named, nothing written.
  test::write_file(dir + "/notes.jpg", "not a picture");
  const std::string out = dir + "/bad.safetensors";
  test::CommandResult r = test::run_command(test::align2_bin() + " preprocess --out " + quote(out) + " " +
                                            quote(images[0]) + " " + quote(dir + "/notes.jpg"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir + "/notes.jpg"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("unsupported_format"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(out));
  r = test::run_command(test::align2_bin() + " preprocess --out " + quote(out) + " " + quote(dir + "/missing.png"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("missing.png: cannot open"), std::string::npos) << r.err;
  // Usage errors: exit 2.
  EXPECT_EQ(test::run_command(test::align2_bin() + " preprocess --aspect anyres --out x " + quote(images[0])).exit_code,
            2);
  EXPECT_EQ(test::run_command(test::align2_bin() + " preprocess --size 0 --out x " + quote(images[0])).exit_code, 2);
  EXPECT_EQ(test::run_command(test::align2_bin() + " preprocess " + quote(images[0])).exit_code, 2);
}

}  // namespace
}  // namespace align2
