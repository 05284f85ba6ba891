//! Writes the full-size official checkpoint as sparse files (no disk used) into DIR, for
//! trying `longcat weights check DIR`: `cargo run -p longcat-model --example sparse_checkpoint -- DIR`.

use longcat_model::checkpoint::verify::fixture::Fixture;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args()
        .nth(1)
        .ok_or("usage: sparse_checkpoint DIR")?;
    Fixture::official()?.write(std::path::Path::new(&dir))?;
    println!("wrote a full-size sparse checkpoint to {dir}");
    Ok(())
}
