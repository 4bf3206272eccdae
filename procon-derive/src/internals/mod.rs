//! What every macro of this crate shares: error collection, attribute names and bookkeeping,
//! and name conversions.

pub(crate) mod attr;
pub(crate) mod case;
pub(crate) mod ctxt;
pub(crate) mod symbol;

pub(crate) use ctxt::Ctxt;
