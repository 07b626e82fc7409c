//! RAND(seed): ADQL's seeded pseudo-random numbers in [0, 1). The same seed gives the same sequence within one
//! query; `RAND()` without a seed maps to DataFusion's `random()`.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{AsArray, Float64Array};
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug)]
pub struct SeededRand {
    signature: Signature,
    /// Rows drawn so far, so that consecutive batches continue the sequence.
    drawn: AtomicU64,
}

impl PartialEq for SeededRand {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for SeededRand {}

impl Hash for SeededRand {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

impl SeededRand {
    pub fn new() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Int64], Volatility::Volatile),
            drawn: AtomicU64::new(0),
        }
    }
}

impl Default for SeededRand {
    fn default() -> Self {
        Self::new()
    }
}

/// SplitMix64: a small, well-mixed generator whose n-th output needs no state but n.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl ScalarUDFImpl for SeededRand {
    fn name(&self) -> &str {
        "adql_rand"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let seeds = args.args[0].to_array(n)?;
        let seeds = seeds.as_primitive::<Int64Type>();
        let start = self.drawn.fetch_add(n as u64, Ordering::Relaxed);
        let out: Vec<f64> = (0..n)
            .map(|i| {
                let seed = seeds.value(i) as u64;
                (splitmix(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ (start + i as u64)) >> 11)
                    as f64
                    / (1u64 << 53) as f64
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}
