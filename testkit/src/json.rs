//! Reading lists out of the api's JSON answers (a time series' points, a
//! usage's features, a page of rows), so that an assertion states the
//! figures it expects instead of walking the array. Each reader panics,
//! naming the list, when an element lacks the field or has another type.

use serde_json::Value;

/// The elements of `list`; panics unless it is an array.
fn elements(list: &Value) -> &[Value] {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
}

/// String `field` of each element of `list`, in order.
pub fn texts<'a>(list: &'a Value, field: &str) -> Vec<&'a str> {
    elements(list)
        .iter()
        .map(|e| {
            e[field]
                .as_str()
                .unwrap_or_else(|| panic!("no text {field} in {e}"))
        })
        .collect()
}

/// Integer `field` of each element of `list`, in order.
pub fn ints(list: &Value, field: &str) -> Vec<i64> {
    elements(list)
        .iter()
        .map(|e| {
            e[field]
                .as_i64()
                .unwrap_or_else(|| panic!("no integer {field} in {e}"))
        })
        .collect()
}

/// The sum of integer `field` over `list`.
pub fn sum(list: &Value, field: &str) -> i64 {
    ints(list, field).iter().sum()
}

/// A usage answer's features with their tokens, in the answer's order.
pub fn by_feature(usage: &Value) -> Vec<(&str, i64)> {
    let features = &usage["byFeature"];
    texts(features, "feature")
        .into_iter()
        .zip(ints(features, "totalTokens"))
        .collect()
}
