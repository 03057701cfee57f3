//! librdkafka's in-process mock cluster: no external process. It does not implement
//! CreateTopics, so topics are made through [`Mock::create_topic`].

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

pub struct Mock {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl Mock {
    pub fn start() -> Mock {
        Mock {
            cluster: MockCluster::new(1).expect("mock cluster"),
        }
    }

    pub fn bootstrap(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        if let Err(e) = self.cluster.create_topic(name, partitions, 1) {
            panic!("mock create_topic {name}: {e}");
        }
    }
}
