//! Property test: decoding and validating any request for any operation returns a value or an
//! error, never a panic, whatever the labels, query string and body contain.

use proptest::prelude::*;

fn json_like() -> impl Strategy<Value = Vec<u8>> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| f.to_string()),
        "[a-zA-Z0-9:/._ -]{0,40}".prop_map(|s| format!("{s:?}")),
    ];
    let value = leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("datastoreName".to_string()),
                        Just("clientToken".to_string()),
                        Just("tags".to_string()),
                        Just("filters".to_string()),
                        Just("values".to_string()),
                        Just("operator".to_string()),
                        Just("DICOMPatientId".to_string()),
                        Just("imageFrameId".to_string()),
                        Just("updatableAttributes".to_string()),
                        Just("copiableAttributes".to_string()),
                        Just("sourceImageSet".to_string()),
                        Just("latestVersionId".to_string()),
                        "[a-zA-Z]{1,12}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| {
                let body: Vec<String> = kv.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                format!("{{{}}}", body.join(","))
            }),
        ]
    });
    prop_oneof![
        value.prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..200),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics(
        op in 0usize..18,
        id in "[0-9a-z]{0,40}",
        query in "[a-zA-Z0-9=&%+._-]{0,80}",
        body in json_like(),
    ) {
        let names: Vec<&String> = lightbox_api::model::MODEL.operations.keys().collect();
        let operation = names[op % names.len()];
        let labels = ["datastoreId", "imageSetId", "sourceImageSetId", "jobId", "resourceArn"]
            .iter()
            .map(|l| (l.to_string(), id.clone()))
            .collect();
        let _ = lightbox_api::decode_request(operation, &labels, Some(&query), &body);
    }
}
