//! State writes on both databases: the checks the http client never makes.

use super::*;

#[tokio::test]
async fn state_writes_are_checked() {
    for (name, st, _g, _d) in stores().await {
        let p = policy();
        st.submit(new_run("w3", false), &p).await.unwrap();
        let env = opened(&st.unsent(1).await.unwrap()[0].payload);
        let g = st
            .claim("a1", &env.task_id, 1, &env.id, &p)
            .await
            .unwrap()
            .granted()
            .unwrap();
        let t = &g.task;
        assert_eq!(
            st.write_state("w3", b"one", 1, "L", None, t, "a")
                .await
                .unwrap(),
            1,
            "{name}"
        );
        assert_eq!(
            st.write_state("w3", b"one", 1, "L", None, t, "a")
                .await
                .unwrap(),
            1,
            "identical retry: no new version"
        );
        assert!(
            st.write_state("w3", b"two", 1, "L", None, t, "a")
                .await
                .is_err(),
            "same serial, other content"
        );
        assert!(
            st.write_state("w3", b"two", 2, "M", None, t, "a")
                .await
                .is_err(),
            "foreign lineage"
        );
        assert!(
            st.write_state("w3", b"two", 0, "L", None, t, "a")
                .await
                .is_err(),
            "lower serial"
        );
        assert!(st.lock_state("w3", "K", "{}", t).await.unwrap().is_ok());
        assert!(
            st.write_state("w3", b"two", 2, "L", None, t, "a")
                .await
                .is_err(),
            "locked: needs the lock ID"
        );
        assert!(
            st.write_state("w3", b"two", 2, "L", Some("X"), t, "a")
                .await
                .is_err(),
            "locked: wrong lock ID"
        );
        assert_eq!(
            st.write_state("w3", b"two", 2, "L", Some("K"), t, "a")
                .await
                .unwrap(),
            2
        );
        assert_eq!(st.latest_state("w3").await.unwrap().unwrap(), b"two");
        assert!(!st.unlock_state("w3", "X", t).await.unwrap());
        assert!(st.unlock_state("w3", "K", t).await.unwrap());
        assert_eq!(st.state_version_count("w3").await.unwrap(), 2);
    }
}
