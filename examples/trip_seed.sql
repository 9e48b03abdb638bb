-- Data for the trip saga's services (sagas/trip.json): run after
-- `travel-service flight|hotel|car` created their tables. Safe to run again:
-- resets these rows. Customers (credit) come from examples/seed.sql.
INSERT INTO flight.inventory (item, available) VALUES
    ('LH400', 9),     -- seats
    ('BA117', 1)
ON CONFLICT (item) DO UPDATE SET available = EXCLUDED.available;
INSERT INTO hotel.inventory (item, available) VALUES
    ('harbour-view', 5),  -- rooms
    ('full-house', 0)
ON CONFLICT (item) DO UPDATE SET available = EXCLUDED.available;
INSERT INTO car.inventory (item, available) VALUES
    ('compact', 4),
    ('van', 1)
ON CONFLICT (item) DO UPDATE SET available = EXCLUDED.available;
