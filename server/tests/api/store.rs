//! The store's group commit, called directly: one transaction for a batch, with resends,
//! strangers and several chats mixed in.
use parley_server::store::{self, NewMessage, NewUser, SendOutcome};

use crate::{
    helpers::{spawn, Backend},
    on_both_backends,
};

on_both_backends!(a_batch_stores_each_message_once_with_gapless_positions);

async fn a_batch_stores_each_message_once_with_gapless_positions(backend: Backend) {
    let app = spawn(backend).await;
    let store = store::connect(&app.config.database_url()).await.unwrap();
    let mut ids = Vec::new();
    for name in ["ada", "bo", "cy", "eve"] {
        let email = format!("{name}@example.org");
        let user =
            store.create_user(NewUser { email: &email, display_name: name, password_hash: "!", now: 1 }).await.unwrap();
        ids.push(user.id);
    }
    let (ada, bo, cy, eve) = (ids[0], ids[1], ids[2], ids[3]);
    let ada_bo = store.create_chat(ada, bo, 1).await.unwrap().chat_id;
    let ada_cy = store.create_chat(ada, cy, 1).await.unwrap().chat_id;
    let before = store.cursor(ada).await.unwrap();

    let message = |chat_id, sender_id, client_id: &str, body: &str| NewMessage {
        chat_id,
        sender_id,
        client_id: client_id.into(),
        body: body.into(),
        now: 2,
    };
    let batch = vec![
        message(ada_bo, ada, "00000000-0000-4000-8000-000000000001", "one"),
        message(ada_cy, ada, "00000000-0000-4000-8000-000000000002", "to cy"),
        message(ada_bo, ada, "00000000-0000-4000-8000-000000000001", "one"),
        message(ada_bo, ada, "00000000-0000-4000-8000-000000000001", "changed"),
        message(ada_bo, eve, "00000000-0000-4000-8000-000000000003", "forged"),
        message(ada_bo, bo, "00000000-0000-4000-8000-000000000004", "two"),
    ];
    let outcomes = store.send_messages(&batch).await.unwrap();
    assert_eq!(outcomes.len(), batch.len());
    let SendOutcome::Created { message: one, events: one_events, .. } = &outcomes[0] else {
        panic!("{:?}", outcomes[0])
    };
    assert_eq!(one.seq, 1);
    let SendOutcome::Created { message: to_cy, .. } = &outcomes[1] else { panic!("{:?}", outcomes[1]) };
    assert_eq!(to_cy.seq, 1, "seq counts per chat");
    match &outcomes[2] {
        SendOutcome::Duplicate { message, cursor } => {
            assert_eq!(message, one);
            assert_eq!(Some(*cursor), one_events.iter().find(|e| e.user_id == ada).map(|e| e.pos));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(outcomes[3], SendOutcome::ClientIdReused));
    assert!(matches!(outcomes[4], SendOutcome::NotMember));
    let SendOutcome::Created { message: two, .. } = &outcomes[5] else { panic!("{:?}", outcomes[5]) };
    assert_eq!(two.seq, 2);

    // Ada's stream grew by exactly her three new events, with no gap and in batch order.
    let events = store.events_since(ada, before, 100).await.unwrap();
    assert_eq!(events.iter().map(|e| e.pos).collect::<Vec<_>>(), vec![before + 1, before + 2, before + 3]);
    assert_eq!(store.cursor(ada).await.unwrap(), before + 3);
    // Resending the whole batch stores nothing new.
    let again = store.send_messages(&batch[..1]).await.unwrap();
    assert!(matches!(&again[0], SendOutcome::Duplicate { message, .. } if message == one));
    assert_eq!(store.cursor(ada).await.unwrap(), before + 3);
    assert_eq!(store.messages_before(ada_bo, i64::MAX, 10).await.unwrap().len(), 2);
}
