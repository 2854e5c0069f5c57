//! Tests for the image preprocessing module (`preprocess.rs`).
//!
//! Fixtures: the Qwen2-VL tiny parity set (`reference.json`, `images/NAME.png` originals and
//! `images/NAME.resized.png`, the exact Pillow 13 output the reference model consumed).

use std::path::Path;

use image::{GrayImage, ImageFormat, Luma, Rgb, RgbImage, Rgba, RgbaImage};
use serde_json::Value;
use tkr_embed::model::preprocess::{
    decode_image, num_image_tokens, preprocess_image, resize_bicubic_rgb, smart_resize, ImageInput,
    PreprocessError, DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, IMAGE_FACTOR, PATCH_DIM,
};

use crate::model_parity::{fixture_dir, reference};

fn load_rgb(path: &Path) -> RgbImage {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    decode_image(&bytes, u64::MAX).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn original(name: &str) -> RgbImage {
    load_rgb(&fixture_dir().join("images").join(format!("{name}.png")))
}

fn u32_pair(v: &Value) -> (u32, u32) {
    let a = v.as_array().expect("pair");
    (
        a[0].as_u64().expect("int") as u32,
        a[1].as_u64().expect("int") as u32,
    )
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

fn max_abs_diff(a: &RgbImage, b: &RgbImage) -> u8 {
    assert_eq!(a.dimensions(), b.dimensions());
    a.as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

#[test]
fn fixture_smart_resize_and_bicubic_are_exact() {
    let reference = reference();
    let images = reference["images"].as_object().expect("images");
    assert_eq!(images.len(), 4);
    for (name, info) in images {
        let img = original(name);
        assert_eq!(u32_pair(&info["size_wh"]), img.dimensions(), "{name}: size");
        let (want_w, want_h) = u32_pair(&info["resized_size_wh"]);
        let (h, w) = smart_resize(
            img.height(),
            img.width(),
            IMAGE_FACTOR,
            DEFAULT_MIN_PIXELS,
            DEFAULT_MAX_PIXELS,
        )
        .expect("smart_resize");
        assert_eq!((w, h), (want_w, want_h), "{name}: smart_resize");

        let ours = resize_bicubic_rgb(&img, w, h);
        let pillow = load_rgb(
            &fixture_dir()
                .join("images")
                .join(format!("{name}.resized.png")),
        );
        let delta = max_abs_diff(&ours, &pillow);
        println!(
            "{name}: {}x{} -> {w}x{h}, max |delta| vs Pillow = {delta}",
            img.width(),
            img.height()
        );
        assert_eq!(delta, 0, "{name}: resize differs from Pillow");
    }
}

#[test]
fn fixture_pixel_values_match_reference() {
    let reference = reference();
    let mut checked = 0;
    for case in reference["cases"].as_array().expect("cases") {
        let Some(stats) = case.get("pixel_values_stats") else {
            continue;
        };
        let id = case["id"].as_str().expect("id");
        let names: Vec<&str> = case["images"]
            .as_array()
            .expect("images")
            .iter()
            .map(|v| v.as_str().expect("name"))
            .collect();
        let inputs: Vec<ImageInput> = names
            .iter()
            .map(|name| {
                preprocess_image(&original(name), DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS)
                    .expect("preprocess")
            })
            .collect();

        let want_grids: Vec<[u32; 3]> = case["image_grid_thw"]
            .as_array()
            .expect("grid")
            .iter()
            .map(|g| {
                let g: Vec<u32> = g
                    .as_array()
                    .expect("grid row")
                    .iter()
                    .map(|v| v.as_u64().expect("int") as u32)
                    .collect();
                [g[0], g[1], g[2]]
            })
            .collect();
        let grids: Vec<[u32; 3]> = inputs.iter().map(|i| i.grid_thw).collect();
        assert_eq!(grids, want_grids, "{id}: image_grid_thw");
        let want_wh: Vec<(u32, u32)> = case["resized_image_sizes_wh"]
            .as_array()
            .expect("sizes")
            .iter()
            .map(u32_pair)
            .collect();
        let wh: Vec<(u32, u32)> = inputs.iter().map(|i| i.resized_wh).collect();
        assert_eq!(wh, want_wh, "{id}: resized sizes");
        for input in &inputs {
            assert_eq!(input.num_tokens() * 4, input.num_patches());
            assert_eq!(input.pixel_values.len(), input.num_patches() * PATCH_DIM);
        }

        // Multi-image cases: the rows of all images concatenated in order (as the HF processor
        // batches them); `per_patch_sum` covers all rows, `row0` is the first image's first row
        // and `row_last` the last image's last row.
        let values: Vec<f32> = inputs
            .iter()
            .flat_map(|i| i.pixel_values.iter().copied())
            .collect();
        let rows: Vec<&[f32]> = values.chunks_exact(PATCH_DIM).collect();
        let (want_rows, want_cols) = u32_pair(&case["pixel_values_shape"]);
        assert_eq!(
            (rows.len(), PATCH_DIM),
            (want_rows as usize, want_cols as usize),
            "{id}: pixel_values_shape"
        );

        let per_patch = f64s(&stats["per_patch_sum"]);
        assert_eq!(per_patch.len(), rows.len(), "{id}: per_patch_sum length");
        let mut worst_patch = 0.0f64;
        for (r, (row, want)) in rows.iter().zip(&per_patch).enumerate() {
            let got: f64 = row.iter().map(|&v| f64::from(v)).sum();
            let d = (got - want).abs();
            worst_patch = worst_patch.max(d);
            assert!(d <= 1e-3, "{id}: per_patch_sum[{r}] = {got}, want {want}");
        }
        let mut worst_value = 0.0f64;
        for (key, row) in [
            ("row0_first16", rows[0]),
            ("row_last_first16", rows[rows.len() - 1]),
        ] {
            let want = f64s(&stats[key]);
            assert_eq!(want.len(), 16);
            for (k, (&got, want)) in row.iter().zip(&want).enumerate() {
                let d = (f64::from(got) - want).abs();
                worst_value = worst_value.max(d);
                assert!(d <= 1e-5, "{id}: {key}[{k}] = {got}, want {want}");
            }
        }
        let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
        let abs_sum: f64 = values.iter().map(|&v| f64::from(v).abs()).sum();
        let want_sum = stats["sum"].as_f64().expect("sum");
        let want_abs = stats["abs_sum"].as_f64().expect("abs_sum");
        let rel = (sum - want_sum).abs() / want_sum.abs();
        let rel_abs = (abs_sum - want_abs).abs() / want_abs;
        println!(
            "{id}: rows {}, max |per_patch_sum delta| {worst_patch:.2e}, \
             max |row value delta| {worst_value:.2e}, sum rel {rel:.2e}, abs_sum rel {rel_abs:.2e}",
            rows.len()
        );
        assert!(rel <= 1e-6, "{id}: sum {sum}, want {want_sum}");
        assert!(rel_abs <= 1e-6, "{id}: abs_sum {abs_sum}, want {want_abs}");
        checked += 1;
    }
    assert_eq!(checked, 7, "image cases in reference.json");
}

#[test]
fn preprocessing_a_resized_fixture_skips_the_resize() {
    // `NAME.resized.png` already has the target size: preprocessing it must give the same
    // values as preprocessing the original (whose resize is bit-exact).
    let name = "img_medium_333x250";
    let resized = load_rgb(
        &fixture_dir()
            .join("images")
            .join(format!("{name}.resized.png")),
    );
    let a = preprocess_image(&resized, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS).unwrap();
    let b = preprocess_image(&original(name), DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS).unwrap();
    assert_eq!(a, b);
}

// ---------------------------------------------------------------------------------------------
// Resize against embedded Pillow outputs (small cases covering the other pass orders)
// ---------------------------------------------------------------------------------------------

/// `(in_w, in_h, out_w, out_h, seed, saturated, Pillow 13 output as hex)`, generated with
/// Pillow 13.0.0 `Image.frombytes('RGB', ...).resize((out_w, out_h))` from `lcg_image`.
/// Cases 1 and 4 run Pillow's vertical pass first, 5 and 6 are vertical-only, 4 and 5 use
/// saturated (0/255) noise to exercise clamping.
#[rustfmt::skip]
const PILLOW_CASES: &[(u32, u32, u32, u32, u64, bool, &str)] = &[
    (12, 30, 10, 7, 1, false, "c77e70816f78677f807b7d7784776c6a8c728c5079947e805f7462948d8d8b7c725c868e657087958b5278676a8497848e6162859994777272809698595d7890617a71567c487987675a7b897e6e86646e548a6452935fa0887e635e838b62667167836483756575acbc9170a18e8d83b5628aa080746576746f5f7c71578b6e947a659e827c868a8b6176917c8d7776ca96978fa6679d7d9c6bb27886695f8569416c7276906370559c686a7f719d5da683586c7099615f93818a808b76865da39a72a6817b6f8e6273a179767da9cb4c74"),
    (30, 12, 7, 10, 2, false, "6e9a78b378755e7fba48818e376b416d656bb68386b2a66d479a99717d9f838d627a6772857b9d8a9fbf7a749363a039429a5b70a099a06e8ab09496b18a8359678c90646c727d8f81a4828d6fa57f88988f86925c6e9a858070768090a4867d9d83896a7462978cb0a8859f9795908f47849f6ba3805151807f7b727b79896b6e708a90616b8385688d957d7382835e6a6f517c8b5f8c7c93a28f868d6b9bb082837b6399728b9a84827c789b718b9068896f5e8e86687e669d5c824fb67e7d96a98d7b8f84a1825f809d7f838093636ca8"),
    (9, 7, 20, 15, 3, false, "47cd7a50bf8a669db2738bbc67a97a53c0383da22d29704028467d3522d4490ccf5f05687c1e48ab69a5beb1ed89ddc64dfb8853ff8172ff8e7fff9360c17467b87d79a2957e939f609e8442a7643c9b483f843b3c5c73382cd2411dd95530837249639f66a4b88bd39dc2a775f36b6af56a69e67e69e1869ca7639ea85fa7ac5396a45d4e819c1669c738898674b0316b8d5d3d40d02e43f23b95c556afa48461a2ae3295cd835ed4e1299fd134539958348367a88a66ac9558b9b034abb73a6083ad255cff4b8fad8ad22e7ab44b3d5fbf2c64ee44c3dc5ed8c17262a58f157ed06d39fcd500b9af164c564c203362576d906a818296af5cb8d059b6c3b4a5b5f789cba967e33948c9432d9093437ab29084a2ad879d7575b64f73b483ab60bbd70e9e9429632a6e4b008c1e58a3396c98789b79b6c670e5daa2efe1c3a5dc8841cd3925bb4435a48265818fbf4e6dd3436e7076b422abd73cd17c6fdc197a9340792f977907ba2a50783f55717061619c6e55ae7d5aa6855b68763b22621434674d7978b99a71bd99505a8341344d4a832165b517a75c22e2004cca447f93be947ee6564e4e60444f792d55851f4d712e25543c022f2b001616074c2560af48e2bb5be0705f5a3d551a3a2b5f372391157c4900e20339f8558aebd9abe8ffb44259b0386aa61f94911d9a6f58414e8c003b811a365d5b5a46899733aca140a7786e7a607f686656886c43a06085885ad37283e79ab9e2d6d0e2e5ff4868f03f87c928d6a035f080977a69ee1364f04d67c8b26688ad65356d722f688e789ba0a0ba9d89b19d78acac98c3bfbddacebed4dbb1c4e0adbdad963da6845e8f4fc3833cf89681a5a9cb51a6ea6095ec916fbb9d3e68974c4a929c5f8dc47184a5756f857a65838d778a9c8f938aa39e6eb2a263ba2bf60532d9203d858d5e47daab4ecbe972a0e5b26fbbf34877e87a22afde3179daa6406fd92b249a4912556b0f377b07297c0c2d584d3d279b4314bd58df135dd12769a4787b75bd9747d5af39d1b7879db0ed6184f47844c4bd4d93bba15c72c643449b54456d6b4a637e3d5d8433415c5022267814108adb8b45d79752d3b575b9b19f7054cf3813ed5263d789ddaa91eb8785bb6986a0699395859c89a2a078bea772cdc88bc5d9a0ad917f822d4c54043741ff685aff7f63ffbd73d3cb915f5acd0501fa2753f078d7c897e78da1b9469ea7468dad8d8aa7caa288f1bf75fff390fefface0b28d96305b43004620"),
    (25, 40, 18, 13, 4, true, "b5618d226970a4bf91fc51ff94498a10bd82468aa33c8659794261958884247ce800d1df42adbfa338ba7c6b5596a74797995fafa78878c472757fe6a462c2925cdb6f6eb641b134288781889658541d4f5996579592b921c48f466eb26229c869584e82c550906a7f6bab4eac7c4665b2ba506fda9738dc09cbbc89907e3bf5685155852c708385c22d177b5b588578c255c7863b64dd3e4d4a8922a2a2753b643253dba92a8f7f883da6d75877a481bc7175d6627931b67f44474baf5a876673c96c7592874ea7907c914c616b8f62b0812c73b4b4587a988c444f0e3f8d4ee770b57b8f9d892ce77546786aa86e31a84f4b618b53bdd049809e9c716b9a35a5923e8bb076ae6d7d4558749b8f977c55c28f9c6d8fef417388c99ba881c48870762048697a899b56b69b5e5bb98ad7c09a625a7e0454ac987fe7ec4da96b36a8922ac78e89abd6ba437d8d9968775f1160a8251587d45fc0e8465e7e30786253447b487e9f63cf315b89acdb46c19f5c818f887d7fcabf578774bf6c8c686bce89564d7b96531c3625665f6b66a6b19880aeba7d6aff6d473a63996ba7498bc493c56effd68a2f55a83fb8c253bed6566fb05751df4b5b4dcbc087838877589d6c7544703d99b897cd937da96d8aa08389d3e787858ac7b4809cffed7fa98a0f647b9f24848ca54f373ba3487fc6ad91cfab9d64946f1f4faf8ac5bb42bdb55ca84fff7f1d54ae876cf9e291a85d9b59ed57a2525a954d54716c436e8081a6a3c575afa6846aae7c74da6e5e743f9963d5709caca86de8814c7b4584ce8423958f9da880794f5c35767bad7f9575ad789ca0a289b28e81a0d49ae0a2747d852341717a6233a6d4a5ceb8aebb6ca17a45ae946b8b8763986d929ea1596b634b4b713f7c6cbc566a66bdb6bba74f335b5eb6838d6797a1b5f6388cf69b1f8c9088a18d3dc68fda37aa967741648065b36f3e4c3e7613982f848db275bda1"),
    (40, 9, 40, 31, 5, true, "ffff00ffff0000ff0000ff00ffffffff00ff0000ffff00ff00ff00ffffff00ff00000000ff000000000000ff00ff0000ffffff00ff00ff00ffff00ff00ff00ff00ff00ff0000ff00ffff00ff00ff00ff00ff0000ff00ff0000ff000000ffffffff000000ffffffffffff00ffff000000ff000000ffffffffffff00ffff0000ff0000ff00ffffffff00ff0000ffff00ff00ff00ffffff00ff00000000ff000000000000ff00ff0000ffffff00ff00ff00ffff00ff00ff00ff00ff00ff0000ff00ffff00ff00ff00ff00ff0000ff00ff0000ff000000ffffffff000000ffffffffffff00ffff000000ff000000ffffffffffd02fffff002fff2f00d500d5d0d0ff2fff002fd5d000ff2fff2fffffd52fff2f2f0000d52a00002f2a00ff2fff2f00ffffd000ff00d02ad0d02ad02ad52ad000ff2ad52a2fd000ffd02aff2fff2fff2fd5002ad500ff0000ff2f2f00ffffffd02a002fffffffffffd500d5d500002ad5000000d0d5d0d0ff728dffff008dff8d008200827272ff8dff008d827200ff8dff8dffff828dff8d8d0000827d00008d7d00ff8dff8d00ffff7200ff00727d72727d727d827d7200ff7d827d8d7200ff727dff8dff8dff8d82007d8200ff0000ff8d8d00ffffff727d008dffffffffff8200828200007d8200000072827272ff19e6ffff00e6ffe6002800281919ffe6ff00e6281900ffe6ffe6ffff28e6ffe6e6000028d70000e6d700ffe6ffe600ffff1900ff0019d71919d719d728d71900ffd728d7e61900ff19d7ffe6ffe6ffe62800d72800ff0000ffe6e600ffffff19d700e6ffffffffff280028280000d72800000019281919ff07f9eeff10f9fff8000010000706fff9ee00f9000600eff9eef9ffff00f9fff9f8100000ff0000f9ff00fff8eff900eeff0711ee0007ff0607ff06ff00ff0600ffff00fff90611ee06fffff8eff8eef90000ff0010ee0010eff8f810ffffff06ff00f8eeefffefff001100001100ff0000101107000706ff55b697ff5cb6ffaa00005c005549ffb69700b6004900a3b697b6ffff00b6ffb6aa5c0000ff0000b6ff00ffaaa3b60097ff5568970055ff4955ff49ff00ff4900ffff00ffb649689749ffffaaa3aa97b60000ff005c97005ca3aaaa5cffffff49ff00aa97a3ffa3ff006800006800ff00005c6855005549ffc15135ffb751ff3e0000b700c1aeff5135005100ae0048513551ffff0051ff513eb70000ff000051ff00ff3e48510035ffc1ca3500c1ffaec1ffaeff00ffae00ffff00ff51aeca35aeffff3e483e35510000ff00b73500b7483e3eb7ffffffaeff003e3548ff48ff00ca0000ca00ff0000b7cac100c1aefffe0501fffa05ff010000fa00fefaff0501000500fa0005050105ffff0005ff0501fa0000ff000005ff00ff0105050001fffefe0100fefffafefffaff00fffa00ffff00ff05fafe01faffff01050101050000ff00fa0100fa050101fafffffffaff00010105ff05ff00fe0000fe00ff0000fafefe00fefaffdb0024ffff00c3243600ff3cd5ffff002a360000ff3600002a00ffff0000c90024ff0000ff000000c900ff240000002affdbd52a00d5ffffdbffffc336c9ff00c9c900c300ffdb2affffc324002a2a003c00c900ff2400ff002a24ffffc9c9ffff362a2400ff00ff36db003cd500ff3600ffdbd536d5ffff7e0081ffff005f818f00ffa06dffff00928f0000ff8f00009200ffff0000700081ff0000ff0000007000ff8100000092ff7e6d92006dffff7effff5f8f70ff007070005f00ff7e92ffff5f8100929200a0007000ff8100ff009281ffff7070ffff8f928100ff00ff8f7e00a06d00ff8f00ff7e6d8f6dffff2000dfffff000fdfe200fff012ffff00ede20000ffe20000ed00ffff00001d00dfff0000ff0000001d00ffdf000000edff2012ed0012ffff20ffff0fe21dff001d1d000f00ff20edffff0fdf00eded00f0001d00ffdf00ff00eddfffff1d1dffffe2eddf00ff00ffe22000f01200ffe200ff2012e212ffe90000ffe9e7000affff00fff30ce9e700f3ff1818ffff0000f300e9ff18000018ffe91600ff0018160016e9ff000000f3ff000cf5160affe900e9e90aff00ff160000160a16ff00f3ffff0cff00f5f516f5160000ffff18e900f3ffe7e70000e7e9fff5ff16ff00e7ff0000f50c16ffff18e7000cff0ce9990000ff998c0054ffff00ff9e61998c009eff7373ffff00009e0099ff73000073ff996600ff007366006699ff0000009eff0061ab6654ff9900999954ff00ff660000665466ff009effff61ff00abab66ab660000ffff7399009eff8c8c00008c99ffabff66ff008cff0000ab6166ffff738c0061ff61993f0000ff3f2c00b8ffff00ff34cb3f2c0034ffd3d3ffff000034003fffd30000d3ff3fc000ff00d3c000c03fff00000034ff00cb47c0b8ff3f003f3fb8ff00ffc00000c0b8c0ff0034ffffcbff004747c047c00000ffffd33f0034ff2c2c00002c3fff47ffc0ff002cff000047cbc0ffffd32c00cbffcb3f000000ff000000ffffff00ff00ff00000000ffffffffff0000000000ffff0000ffff00ff00ff00ffff00ff00ff00000000ff00ff00ffffff00000000ffff00ffff0000ffffffff0000ffffffff000000ff00ff0000ffffff000000ff000000000000ff00ffffff0000ff000000ffffffffff0000ffffff00003f00ff002c47ffc0ff47ff34cb002c4734b8cbd3ffb8473f2c3f00b8cb0000d3ff00ff00ff00d3ff00ff00ff00004734c000d300ffffff00470000ffff3fffff4700ffffffff0034ffc0d3ff470000ff00ff0000ffffcb004734c0342c00473400b800c0ffff472cb8003f00d3ffc0ffd33447cbc0d300009900ff008cabff66ffabff9e61008cab9e546173ff54ab998c99005461000073ff00ff00ff0073ff00ff00ff0000ab9e66007300ffffff00ab0000ffff99ffffab00ffffffff009eff6673ffab0000ff00ff0000ffff6100ab9e669e8c00ab9e00540066ffffab8c5400990073ff66ff739eab6166730000e900ff00e7f5ff16fff5fff30c00e7f5f30a0c18ff0af5e9e7e9000a0c000018ff00ff00ff0018ff00ff00ff0000f5f316001800ffffff00f50000ffffe9fffff500ffffffff00f3ff1618fff50000ff00ff0000ffff0c00f5f316f3e700f5f3000a0016fffff5e70a00e90018ff16ff18f3f50c16180020ff00e200ffedff00ffeddfed1220ffedf00f0f00ff12edffffff000f0f001d00df00df00e20000ff20e21dff001df0f00000001dffe2df00ed0000fffffffffff000dfe2ffe200f0e20000ffed0000ff00e21d00ffdf0f00edf000f0ff00eded00120000dfffedff1200ff0000ff00ff00edf01200001d7eff008f00ff92ff00ff9281926d7eff92a05f5f00ff6d92ffffff005f5f007000810081008f0000ff7e8f70ff0070a0a000000070ff8f8100920000ffffffffffa000818fff8f00a08f0000ff920000ff008f7000ff815f0092a000a0ff009292006d000081ff92ff6d00ff0000ff00ff0092a06d000070dbff003600ff2aff00ff2a242ad5dbff2a3cc3c300ffd52affffff00c3c300c90024002400360000ffdb36c9ff00c93c3c000000c9ff3624002a0000ffffffffff3c002436ff36003c360000ff2a0000ff0036c900ff24c3002a3c003cff002a2a00d5000024ff2affd500ff0000ff00ff002a3cd50000c9fefa000005ff01fa00ff010101fefefa0100ffff05fffe01ffffff00ffff00ff0001000100000005fffe00ffff05ff0000000000fffa000100010505fafafafffa00050100fa000000000500fa010000ff0500ff00fa01ff0001000000fa05010100fe000501fa01fffe05fa0505fa00fa000100fe0005ffc1ae000051ff3eb700ff353e35cacab73e00ffff51ffca35ffffff00ffff00ff0035003e00000051ffca00ffff51ff0000000000ffb7003500354851b7aeaeffae00513e00ae000000004800ae3e0000ff4800ff00ae35ff003e000000ae51353500c1004835b735ffca48b74848ae00ae003500ca0051ff55490000b6ffaa5c00ff97aa9768685caa00ffffb6ff6897ffffff00ffff00ff009700aa000000b6ff6800ffffb6ff0000000000ff5c00970097a3b65c4949ff4900b6aa004900000000a30049aa0000ffa300ff004997ff00aa00000049b69797005500a3975c97ff68a35ca3a34900490097006800b6ff07060000f9fff81000ffeef8ee111110f800fffff9ff11eeffffff00ffff00ff00ee00f8000000f9ff1100fffff9ff0000000000ff1000ee00eeeff9100606ff0600f9f8000600000000ef0006f80000ffef00ff0006eeff00f800000006f9eeee000700efee10eeff11ef10efef06000600ee001100f9ff19192828e6ffe60028ffffe6ff000000e628ffffe6d700ffffd7ff28d7d700ff28ff28e6000028e6ff0028ffffe6ff2800282828ff0028ff28ffffe6001919ff1900e6e6281900002800ff2819e62800ffff28d70019ffff00e600280019e6ffff281900ffff00ffff00ff00ffff19281928ff000000e6d7727282828dff8d0082ffff8dff0000008d82ffff8d7d00ffff7dff827d7d00ff82ff828d0000828dff0082ffff8dff8200828282ff0082ff82ffff8d007272ff72008d8d827200008200ff82728d8200ffff827d0072ffff008d008200728dffff827200ffff00ffff00ff00ffff72827282ff0000008d7dd0d0d5d52fff2f00d5ffff2fff0000002fd5ffff2f2a00ffff2affd52a2a00ffd5ffd52f0000d52fff00d5ffff2fffd500d5d5d5ff00d5ffd5ffff2f00d0d0ffd0002f2fd5d00000d500ffd5d02fd500ffffd52a00d0ffff002f00d500d02fffffd5d000ffff00ffff00ff00ffffd0d5d0d5ff0000002f2affffffff00ff0000ffffff00ff00000000ffffff000000ffff00ffff000000ffffffff000000ff00ff00ffffff00ffff00ffffffff00ffffffffff0000ffffffff000000ffff0000ff00ffffff00ff00ffffff0000ffffff000000ff00ff00ffffffff00ffff00ffff00ff00ffffffffffffff0000000000ffffffff00ff0000ffffff00ff00000000ffffff000000ffff00ffff000000ffffffff000000ff00ff00ffffff00ffff00ffffffff00ffffffffff0000ffffffff000000ffff0000ff00ffffff00ff00ffffff0000ffffff000000ff00ff00ffffffff00ffff00ffff00ff00ffffffffffffff0000000000"),
    (17, 50, 17, 9, 6, false, "7b6b9558c187af5e8d74a5af4e686ca3574b84697577939b4aac7f83a771884e6f6184b7a76574a8a67e5670ca7877a48b8f69ac9c92818ba073ab6e74ba648f72985451717296567c717a62856c928180906a918084a0734f7e87525c658d936e89b08b8f9585a27766a1919785835e98b197729777936b6b6853614996b96d7d667580ab8687567a6856769776835d8a7bc98969648588645f9f5a79b4c29e8234788763a8709b8c626c6a4b824578757d837b7b6fc3914d5f6076a782a5b78da6745399a79e6f9aa7728035b190887f8663666dc079a98c758f7260786d6f81908ba97e86c882b66976765f81717693766a71a1ac557d755e8d56818ba978597087876b7c708898899a7e4a80778f8969a29a7e5e828f6087919a829eba7285746a5d7c6d90768872724c9963747478938da38858a97d9981a2908088647b64846ccda39dbcd1336e6c87717a99a29a9488706d64767477a566938f5a7672866ec39371889896758b7e86847795806a7f9ea170596f66629498867f897da058ac35a486855861975a577b997ba7727ba032638473ba7a7886738181716fbba085637fa8bb6b9d6986937d786f9f6c6c8e76777b6980886b7351ba779dab5e7e495f625f5c948cb69182"),
];

/// Deterministic test image: bytes from the LCG `s = (s * 1103515245 + 12345) mod 2^31`,
/// `(s >> 16) & 255`; `saturated` maps odd bytes to 255 and even ones to 0.
fn lcg_image(w: u32, h: u32, seed: u64, saturated: bool) -> RgbImage {
    let mut s = seed;
    let data: Vec<u8> = (0..w * h * 3)
        .map(|_| {
            s = (s * 1_103_515_245 + 12_345) % (1 << 31);
            let b = ((s >> 16) & 255) as u8;
            match (saturated, b & 1) {
                (false, _) => b,
                (true, 1) => 255,
                (true, _) => 0,
            }
        })
        .collect();
    RgbImage::from_raw(w, h, data).unwrap()
}

#[test]
fn bicubic_matches_embedded_pillow_outputs() {
    for &(w, h, ow, oh, seed, saturated, want_hex) in PILLOW_CASES {
        let img = lcg_image(w, h, seed, saturated);
        let want = RgbImage::from_raw(ow, oh, hex::decode(want_hex).unwrap()).unwrap();
        let got = resize_bicubic_rgb(&img, ow, oh);
        let delta = max_abs_diff(&got, &want);
        println!("{w}x{h} -> {ow}x{oh} (saturated: {saturated}): max |delta| = {delta}");
        assert_eq!(delta, 0, "{w}x{h} -> {ow}x{oh}");
    }
}

#[test]
fn bicubic_identity_constant_and_degenerate_sizes() {
    let img = lcg_image(13, 11, 9, false);
    assert_eq!(resize_bicubic_rgb(&img, 13, 11), img);

    let flat = RgbImage::from_pixel(37, 23, Rgb([200, 17, 90]));
    for (w, h) in [(5, 4), (80, 3), (37, 60), (1, 1), (100, 100)] {
        let out = resize_bicubic_rgb(&flat, w, h);
        assert_eq!(out.dimensions(), (w, h));
        assert!(out.pixels().all(|p| *p == Rgb([200, 17, 90])), "{w}x{h}");
    }

    // A 1x1 source can be scaled up; zero sizes give an empty / black image instead of panicking.
    let dot = RgbImage::from_pixel(1, 1, Rgb([1, 2, 3]));
    assert!(resize_bicubic_rgb(&dot, 4, 3)
        .pixels()
        .all(|p| *p == Rgb([1, 2, 3])));
    assert_eq!(resize_bicubic_rgb(&dot, 0, 3).dimensions(), (0, 3));
    let empty = RgbImage::new(0, 0);
    assert_eq!(resize_bicubic_rgb(&empty, 2, 2), RgbImage::new(2, 2));
}

// ---------------------------------------------------------------------------------------------
// smart_resize
// ---------------------------------------------------------------------------------------------

const F: u32 = IMAGE_FACTOR;

fn sr(h: u32, w: u32) -> (u32, u32) {
    smart_resize(h, w, F, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS).unwrap()
}

#[test]
fn smart_resize_rounds_half_to_even() {
    // 14 * odd = 28 * (k + 0.5): Python's round() goes to the even multiple.
    // 14 * 33 = 462 = 28 * 16.5 -> 16 * 28 = 448; 14 * 35 = 490 = 28 * 17.5 -> 18 * 28 = 504.
    assert_eq!(sr(462, 490), (448, 504));
    assert_eq!(sr(490, 462), (504, 448));
    // Same with a plain factor and loose bounds.
    assert_eq!(smart_resize(15, 25, 10, 1, u64::MAX).unwrap(), (20, 20));
    assert_eq!(smart_resize(45, 35, 10, 1, u64::MAX).unwrap(), (40, 40));
    // Non-ties round to nearest; sides are at least `factor`.
    assert_eq!(smart_resize(13, 16, 10, 1, u64::MAX).unwrap(), (10, 20));
    assert_eq!(smart_resize(3, 4, 10, 1, u64::MAX).unwrap(), (10, 10));
    // Already a multiple: unchanged.
    assert_eq!(sr(784, 1232), (784, 1232));
}

#[test]
fn smart_resize_scales_small_images_up_to_min_pixels() {
    // Fixture values (height, width).
    assert_eq!(sr(30, 20), (560, 392));
    assert_eq!(sr(250, 333), (392, 532));
    assert_eq!(sr(96, 640), (196, 1176));
    for (h, w) in [(1, 1), (2, 3), (10, 100), (100, 17)] {
        let (nh, nw) = sr(h, w);
        assert!(
            u64::from(nh) * u64::from(nw) >= DEFAULT_MIN_PIXELS,
            "{h}x{w}"
        );
        assert_eq!((nh % F, nw % F), (0, 0));
    }
    assert_eq!(sr(1, 1), (448, 448));
}

#[test]
fn smart_resize_scales_large_images_down_to_max_pixels() {
    assert_eq!(sr(850, 1300), (784, 1232));
    for (h, w) in [(4000, 3000), (10_000, 10_000), (1081, 1920), (50, 9000)] {
        let (nh, nw) = sr(h, w);
        assert!(
            u64::from(nh) * u64::from(nw) <= DEFAULT_MAX_PIXELS,
            "{h}x{w}"
        );
        assert_eq!((nh % F, nw % F), (0, 0));
    }
    assert_eq!(sr(3000, 4000), (840, 1148));
}

#[test]
fn smart_resize_matches_python() {
    // (height, width) -> (h_bar, w_bar) from the Python reference implementation with the
    // recipe's factor 28, min 200704, max 1003520.
    let table = [
        ((462, 490), (448, 504)),
        ((784, 1232), (784, 1232)),
        ((2, 3), (392, 560)),
        ((10, 100), (168, 1428)),
        ((100, 17), (1092, 196)),
        ((4000, 3000), (1148, 840)),
        ((10_000, 10_000), (980, 980)),
        ((1081, 1920), (728, 1316)),
        ((50, 9000), (56, 8988)),
        ((1, 200), (56, 6356)),
        ((14, 2786), (56, 6328)),
        ((406, 42), (1400, 168)),
    ];
    for ((h, w), want) in table {
        assert_eq!(sr(h, w), want, "{h}x{w}");
    }
}

#[test]
fn smart_resize_rejects_bad_input() {
    assert!(matches!(
        smart_resize(1, 201, F, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS),
        Err(PreprocessError::AspectRatio { .. })
    ));
    assert!(matches!(
        smart_resize(10_000, 49, F, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS),
        Err(PreprocessError::AspectRatio { .. })
    ));
    // Exactly 200 is allowed.
    assert!(smart_resize(1, 200, F, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS).is_ok());
    assert!(matches!(
        smart_resize(0, 10, F, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS),
        Err(PreprocessError::ZeroSize { .. })
    ));
    assert!(matches!(
        smart_resize(10, 10, 0, DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS),
        Err(PreprocessError::InvalidArgument(_))
    ));
    assert!(matches!(
        smart_resize(10, 10, F, 0, 0),
        Err(PreprocessError::InvalidArgument(_))
    ));
    // A result beyond u32 is an error, not a wrap-around.
    assert!(matches!(
        smart_resize(u32::MAX, u32::MAX, 1, u64::MAX, u64::MAX),
        Err(PreprocessError::InvalidArgument(_))
    ));
    let msg = smart_resize(1, 300, F, 1, 2).unwrap_err().to_string();
    assert!(msg.contains("300x1") && msg.contains("200"), "{msg}");
    // preprocess_image passes the errors on.
    assert!(matches!(
        preprocess_image(&RgbImage::new(0, 0), DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS),
        Err(PreprocessError::ZeroSize { .. })
    ));
}

#[test]
fn token_count() {
    assert_eq!(num_image_tokens([1, 56, 88]), 1232);
    assert_eq!(num_image_tokens([1, 14, 84]), 294);
}

#[test]
fn preprocess_layout_on_a_synthetic_image() {
    // 56x28 image: R encodes the raster index of the 14x14 patch, G the position inside the
    // patch, B is constant.
    let (w, h) = (56u32, 28u32);
    let img = RgbImage::from_fn(w, h, |x, y| {
        let patch = (y / 14) * 4 + x / 14;
        let inner = (y % 14) * 14 + x % 14;
        Rgb([patch as u8, inner as u8, 7])
    });
    // Bounds that keep the size.
    let input = preprocess_image(&img, 1, u64::MAX).unwrap();
    assert_eq!(input.grid_thw, [1, 2, 4]);
    assert_eq!(input.resized_wh, (56, 28));
    let rows: Vec<&[f32]> = input.pixel_values.chunks_exact(PATCH_DIM).collect();
    assert_eq!(rows.len(), 8);
    // Python floats, cast to f32 like `np.array(mean, dtype=np.float32)`.
    let mean = [0.48145466f64, 0.4578275, 0.40821073];
    let std = [0.26862954f64, 0.26130258, 0.27577711];
    let norm = |v: u8, c: usize| {
        ((f64::from(v) * 0.00392156862745098) as f32 - mean[c] as f32) / std[c] as f32
    };
    // Rows ordered over (gh/2, gw/2, 2, 2): window (0,0) holds patches (0,0),(0,1),(1,0),(1,1),
    // i.e. raster patch indices 0, 1, 4, 5; window (0,1) holds 2, 3, 6, 7.
    let expected_patch = [0u8, 1, 4, 5, 2, 3, 6, 7];
    for (row, &patch) in rows.iter().zip(&expected_patch) {
        // Layout (C = 3, T = 2, 14, 14).
        for t in 0..2 {
            for i in 0..196 {
                assert_eq!(row[t * 196 + i], norm(patch, 0));
                assert_eq!(row[392 + t * 196 + i], norm(i as u8, 1));
                assert_eq!(row[784 + t * 196 + i], norm(7, 2));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// decode_image
// ---------------------------------------------------------------------------------------------

fn encode(img: impl Into<image::DynamicImage>, format: ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.into().write_to(&mut out, format).unwrap();
    out.into_inner()
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn decode_rejects_empty_random_and_truncated_data() {
    assert_eq!(
        decode_image(&[], u64::MAX),
        Err(PreprocessError::EmptyInput)
    );

    let random: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(
        decode_image(&random, u64::MAX),
        Err(PreprocessError::UnknownFormat)
    );
    assert_eq!(
        decode_image(b"hello, world", u64::MAX),
        Err(PreprocessError::UnknownFormat)
    );

    let png = std::fs::read(fixture_dir().join("images/img_large_1300x850.png")).unwrap();
    for cut in [png.len() / 2, 40, 9] {
        let err = decode_image(&png[..cut], u64::MAX).unwrap_err();
        println!("PNG truncated to {cut} bytes: {err}");
        assert!(matches!(err, PreprocessError::Decode(_)), "{err:?}");
    }
    // zune-jpeg fills missing scan data with grey; like Pillow, a JPEG without its
    // end-of-image marker must be rejected.
    let jpeg = encode(lcg_image(64, 48, 3, false), ImageFormat::Jpeg);
    assert!(decode_image(&jpeg, u64::MAX).is_ok());
    for cut in [jpeg.len() / 2, jpeg.len() - 2, 30] {
        let err = decode_image(&jpeg[..cut], u64::MAX).unwrap_err();
        println!("JPEG truncated to {cut} of {} bytes: {err}", jpeg.len());
        assert!(matches!(err, PreprocessError::Decode(_)), "{err:?}");
    }
    // Trailing bytes after the end-of-image marker are fine.
    let mut padded = jpeg.clone();
    padded.extend_from_slice(&[0u8; 16]);
    assert!(decode_image(&padded, u64::MAX).is_ok());

    // Valid signature, garbage afterwards.
    let mut bad = png[..64].to_vec();
    bad[20..].iter_mut().for_each(|b| *b = 0x5a);
    let err = decode_image(&bad, u64::MAX).unwrap_err();
    println!("PNG with corrupt header: {err}");
    assert!(matches!(err, PreprocessError::Decode(_)), "{err:?}");
}

#[test]
fn decode_rejects_too_many_pixels_before_decoding() {
    // A 1x1 PNG whose IHDR claims 100000x100000 pixels (CRC fixed): it must be rejected from
    // the header alone (decoding would need 30 GB).
    let mut png = encode(RgbImage::from_pixel(1, 1, Rgb([1, 2, 3])), ImageFormat::Png);
    assert_eq!(&png[12..16], b"IHDR");
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let err = decode_image(&png, 1 << 28).unwrap_err();
    assert_eq!(
        err,
        PreprocessError::TooManyPixels {
            width: 100_000,
            height: 100_000,
            pixels: 10_000_000_000,
            max_pixels: 1 << 28
        }
    );
    let msg = err.to_string();
    println!("{msg}");
    assert!(msg.contains("10000000000") && msg.contains("268435456"));

    // A real image just over / at the limit.
    let bytes = std::fs::read(fixture_dir().join("images/img_tiny_20x30.png")).unwrap();
    assert!(matches!(
        decode_image(&bytes, 599),
        Err(PreprocessError::TooManyPixels { pixels: 600, .. })
    ));
    assert_eq!(decode_image(&bytes, 600).unwrap().dimensions(), (20, 30));
}

#[test]
fn decode_zero_size_is_an_error() {
    // A valid GIF whose logical screen is patched to 0x0.
    let mut gif = encode(RgbImage::from_pixel(2, 2, Rgb([1, 2, 3])), ImageFormat::Gif);
    assert_eq!(&gif[..6], b"GIF89a");
    gif[6..10].copy_from_slice(&[0, 0, 0, 0]);
    let err = decode_image(&gif, u64::MAX).unwrap_err();
    assert_eq!(
        err,
        PreprocessError::ZeroSize {
            width: 0,
            height: 0
        }
    );
    assert_eq!(err.to_string(), "image has zero size (0x0)");

    // GIF with a 0x0 logical screen and no frames at all.
    let gif = b"GIF89a\x00\x00\x00\x00\x00\x00\x00\x3b";
    let err = decode_image(gif, u64::MAX).unwrap_err();
    println!("0x0 GIF: {err}");
    assert!(
        matches!(
            err,
            PreprocessError::ZeroSize { .. } | PreprocessError::Decode(_)
        ),
        "{err:?}"
    );
}

#[test]
fn decode_drops_alpha_without_compositing() {
    let rgba = RgbaImage::from_fn(9, 5, |x, y| {
        Rgba([(x * 20) as u8, (y * 40) as u8, 200, ((x + y) * 25) as u8])
    });
    let rgb = decode_image(&encode(rgba.clone(), ImageFormat::Png), u64::MAX).unwrap();
    assert_eq!(rgb.dimensions(), (9, 5));
    for (p, q) in rgb.pixels().zip(rgba.pixels()) {
        assert_eq!(p.0, [q[0], q[1], q[2]]);
    }
}

#[test]
fn decode_drops_alpha_of_gray_alpha() {
    let la = image::GrayAlphaImage::from_fn(6, 3, |x, y| {
        image::LumaA([(x * 40 + y) as u8, (255 - x * 50) as u8])
    });
    let rgb = decode_image(&encode(la.clone(), ImageFormat::Png), u64::MAX).unwrap();
    for (p, q) in rgb.pixels().zip(la.pixels()) {
        assert_eq!(p.0, [q[0]; 3]);
    }
}

#[test]
fn decode_expands_grayscale() {
    let gray = GrayImage::from_fn(7, 4, |x, y| Luma([(x * 30 + y) as u8]));
    let rgb = decode_image(&encode(gray.clone(), ImageFormat::Png), u64::MAX).unwrap();
    assert_eq!(rgb.dimensions(), (7, 4));
    for (p, q) in rgb.pixels().zip(gray.pixels()) {
        assert_eq!(p.0, [q[0]; 3]);
    }
}

#[test]
fn decode_reduces_16_bit_to_the_top_byte() {
    let samples = [0u16, 255, 256, 32767, 32768, 65280, 65535];
    let img = image::ImageBuffer::<Rgb<u16>, Vec<u16>>::from_fn(7, 1, |x, _| {
        let v = samples[x as usize];
        Rgb([v, 65535 - v, v / 2])
    });
    let rgb = decode_image(&encode(img, ImageFormat::Png), u64::MAX).unwrap();
    for (p, &v) in rgb.pixels().zip(&samples) {
        let want = [
            (v >> 8) as u8,
            ((65535 - v) >> 8) as u8,
            ((v / 2) >> 8) as u8,
        ];
        assert_eq!(p.0, want);
    }
    let gray = image::ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(7, 1, |x, _| {
        Luma([samples[x as usize]])
    });
    let rgb = decode_image(&encode(gray, ImageFormat::Png), u64::MAX).unwrap();
    for (p, &v) in rgb.pixels().zip(&samples) {
        assert_eq!(p.0, [(v >> 8) as u8; 3]);
    }
}

/// APP1 segment with a big-endian TIFF header and one IFD entry: Orientation (0x0112) = `value`.
fn exif_orientation_segment(value: u16) -> Vec<u8> {
    let mut tiff = Vec::new();
    tiff.extend_from_slice(b"MM\x00\x2a");
    tiff.extend_from_slice(&8u32.to_be_bytes()); // IFD0 offset
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // tag: Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // type: SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // count
    tiff.extend_from_slice(&value.to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // value padding
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    let mut payload = b"Exif\x00\x00".to_vec();
    payload.extend_from_slice(&tiff);
    let mut seg = vec![0xff, 0xe1];
    seg.extend_from_slice(&((payload.len() + 2) as u16).to_be_bytes());
    seg.extend_from_slice(&payload);
    seg
}

fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "SOI");
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&exif_orientation_segment(orientation));
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn decode_applies_exif_orientation() {
    // 32x16: left half red, right half blue.
    let img = RgbImage::from_fn(32, 16, |x, _| {
        if x < 16 {
            Rgb([230, 20, 20])
        } else {
            Rgb([20, 20, 230])
        }
    });
    let jpeg = encode(img, ImageFormat::Jpeg);
    let plain = decode_image(&jpeg, u64::MAX).unwrap();
    assert_eq!(plain.dimensions(), (32, 16));

    // Orientation 6: rotate 90 degrees clockwise, so the left half ends up on top.
    let out = decode_image(&with_exif(&jpeg, 6), u64::MAX).unwrap();
    assert_eq!(out.dimensions(), (16, 32));
    let top = out.get_pixel(8, 4);
    let bottom = out.get_pixel(8, 27);
    assert!(top[0] > 180 && top[2] < 80, "top {top:?}");
    assert!(bottom[2] > 180 && bottom[0] < 80, "bottom {bottom:?}");

    // Orientation 3 (180 degrees) keeps the size and swaps the halves.
    let out = decode_image(&with_exif(&jpeg, 3), u64::MAX).unwrap();
    assert_eq!(out.dimensions(), (32, 16));
    assert!(out.get_pixel(4, 8)[2] > 180 && out.get_pixel(27, 8)[0] > 180);

    // Orientation 1 and an invalid value leave the image alone.
    for o in [1, 0, 42] {
        let out = decode_image(&with_exif(&jpeg, o), u64::MAX).unwrap();
        assert_eq!(out, plain, "orientation {o}");
    }
}

#[test]
fn decode_other_formats() {
    let img = lcg_image(10, 6, 11, false);
    for format in [
        ImageFormat::Bmp,
        ImageFormat::Tiff,
        ImageFormat::Png,
        ImageFormat::WebP,
    ] {
        let out = decode_image(&encode(img.clone(), format), u64::MAX).unwrap();
        assert_eq!(out, img, "{format:?}");
    }
    let out = decode_image(&encode(img.clone(), ImageFormat::Gif), u64::MAX).unwrap();
    assert_eq!(out.dimensions(), (10, 6));
}

/// A 16x8 CMYK JPEG written by Pillow 13 (Adobe APP14, inverted CMYK): left half pure cyan,
/// right half 50% black. Pillow's `convert('RGB')` gives (0, 255, 255) and (127, 127, 127).
const CMYK_JPEG_HEX: &[&str] = &[
    "ffd8ffee000e41646f626500640000000000ffdb0043000201010101010201010102020202020403020202020504",
    "040304060506060605060606070908060709070606080b08090a0a0a0a0a06080b0c0b0a0c090a0a0affc0001408",
    "00080010044311004d11005911004b1100ffc4001f00000105010101010101000000000000000001020304050607",
    "08090a0bffc400b5100002010303020403050504040000017d010203000411051221314106135161072271143281",
    "91a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a5354",
    "55565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8",
    "a9aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7",
    "f8f9faffda000e0443004d0059004b00003f00fe7febf7f2bf7f2bf7f2bfbfca28afe7febfffd9",
];

#[test]
fn decode_converts_cmyk_jpeg() {
    let jpeg = hex::decode(CMYK_JPEG_HEX.concat()).unwrap();
    let rgb = decode_image(&jpeg, u64::MAX).unwrap();
    assert_eq!(rgb.dimensions(), (16, 8));
    for (x, want) in [(2, [0u8, 255, 255]), (12, [127, 127, 127])] {
        let got = rgb.get_pixel(x, 4).0;
        let delta = got
            .iter()
            .zip(want)
            .map(|(a, b)| a.abs_diff(b))
            .max()
            .unwrap();
        assert!(delta <= 2, "x={x}: {got:?} vs Pillow {want:?}");
    }
}

#[test]
fn decode_recognised_but_unsupported_format() {
    // ICO signature: recognised by `image`, but the codec is not compiled in.
    let ico = [
        0u8, 0, 1, 0, 1, 0, 16, 16, 0, 0, 1, 0, 32, 0, 0, 0, 0, 0, 22, 0, 0, 0,
    ];
    let err = decode_image(&ico, u64::MAX).unwrap_err();
    println!("ICO: {err}");
    assert!(matches!(err, PreprocessError::Unsupported(_)), "{err:?}");
}
