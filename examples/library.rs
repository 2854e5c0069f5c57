//! Using tkr-embed as a library: start the engine, open a database, insert
//! text and images (embedded on insert), search across modalities.
//!
//! `cargo run --release --example library -- [MODEL_DIR] [DATA_DIR]`
//! (defaults: the tiny fixture model, a temporary directory).
use tkr_embed::{
    db::{ContentDocument, DbOptions},
    engine::{engine_config, EmbedRequest, Engine},
    index::Filter,
    Db,
};

fn main() -> anyhow::Result<()> {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .unwrap_or_else(|| format!("{root}/tests/fixtures/qwen2vl-tiny/model"));
    let scratch = tempfile::tempdir()?;
    let data = args
        .next()
        .map_or_else(|| scratch.path().to_owned(), Into::into);

    let config = tkr_embed::config::Config::default();
    let engine = Engine::start(engine_config(&config, model.clone().into(), model.clone()))?;
    let db = Db::open(
        &data,
        DbOptions::new(model, engine.info().dim, engine.info().dtype.clone()),
    )?;
    db.create_collection("demo")?;

    for name in ["img_medium_333x250", "img_wide_640x96"] {
        let bytes = std::fs::read(format!(
            "{root}/tests/fixtures/qwen2vl-tiny/images/{name}.png"
        ))?;
        db.insert_content(
            &engine,
            "demo",
            ContentDocument {
                id: Some(name.into()),
                images: vec![bytes],
                metadata: serde_json::json!({"kind": "picture"}),
                ..Default::default()
            },
        )?;
    }
    db.insert_content(
        &engine,
        "demo",
        ContentDocument {
            id: Some("caption".into()),
            text: Some("A checkerboard pattern".into()),
            metadata: serde_json::json!({"kind": "caption"}),
            ..Default::default()
        },
    )?;

    // text → images, restricted by a metadata filter
    let filter = Filter::eq("kind", "picture");
    let hits = db.search_content(
        &engine,
        "demo",
        EmbedRequest::text("checkerboard"),
        5,
        Some(&filter),
    )?;
    for h in &hits {
        println!("text→image  {:<22} {:.4}", h.id, h.score);
    }
    // image → anything
    let bytes = std::fs::read(format!(
        "{root}/tests/fixtures/qwen2vl-tiny/images/img_wide_640x96.png"
    ))?;
    let hits = db.search_content(&engine, "demo", EmbedRequest::image(bytes), 3, None)?;
    for h in &hits {
        println!("image→any   {:<22} {:.4}", h.id, h.score);
    }
    Ok(())
}
