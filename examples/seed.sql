-- Demo and test data for the example services (their tables must exist:
-- start the services once first). Safe to run again: resets these rows.
INSERT INTO payment.customers (id, credit_limit, reserved) VALUES
    ('alice', 10000, 0),
    ('bob', 500, 0)
ON CONFLICT (id) DO UPDATE SET credit_limit = EXCLUDED.credit_limit, reserved = 0;
INSERT INTO inventory.stock (sku, available) VALUES
    ('widget', 10),
    ('gadget', 1)
ON CONFLICT (sku) DO UPDATE SET available = EXCLUDED.available;
