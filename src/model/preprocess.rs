// TEMPORARY until the real preprocessing lands (not committed).
pub struct ImageInput {
    pub pixel_values: Vec<f32>,
    pub grid_thw: [u32; 3],
    pub resized_wh: (u32, u32),
}
impl Clone for ImageInput {
    fn clone(&self) -> Self {
        ImageInput {
            pixel_values: self.pixel_values.clone(),
            grid_thw: self.grid_thw,
            resized_wh: self.resized_wh,
        }
    }
}
impl std::fmt::Debug for ImageInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ImageInput")
    }
}
#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("x")]
    X,
}
